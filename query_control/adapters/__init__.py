"""Agency adapters: one per agency kind behind ``port.AgencyAdapter``."""
