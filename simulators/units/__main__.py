"""``python -m simulators.units``: simulated field units on the real transports (see ``simulate``)."""

from simulators.units.simulate import main

if __name__ == "__main__":
    main()
