"""Settings (TOML file + environment) and shipped configuration data. Imports nothing of ours."""

from config.settings import Settings, load_settings

__all__ = ["Settings", "load_settings"]
