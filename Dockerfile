# Production image of the command centre. Built by docker-compose.yml; no Docker engine runs on the
# development machines, so this file is kept correct by reading (see README).
# Front-end libraries (Leaflet) from the npm registry at build time: nothing is fetched at run time.
FROM node:20-slim AS web
WORKDIR /web
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /srv/command-centre

COPY pyproject.toml README.md constraints.txt ./
COPY core core
COPY config config
COPY persistence persistence
COPY event_bus event_bus
COPY cluster cluster
COPY alarms alarms
COPY tasks tasks
COPY operations operations
COPY entrustments entrustments
COPY consultations consultations
COPY courts courts
COPY command_center command_center
COPY field_units field_units
COPY query_control query_control
COPY media media
COPY maps maps
COPY gb28181 gb28181
# field_device/ (the unit's own code) and simulators/ are not part of the server and stay out of its image.
COPY --from=web /web/node_modules node_modules
RUN pip install -c constraints.txt . && useradd --system --home /srv/command-centre cc && mkdir -p /var/lib/command-centre \
    && chown cc /var/lib/command-centre

USER cc
ENV CC_DATA_DIR=/var/lib/command-centre CC_SERVER__HOST=0.0.0.0 CC_SERVER__PORT=8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --retries=5 \
  CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/api/health', timeout=2)" || exit 1
CMD ["sh", "-c", "python -m command_center init && exec python -m command_center serve"]
