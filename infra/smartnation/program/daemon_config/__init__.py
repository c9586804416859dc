"""Configuration files that smartnation writes for third-party daemons.

Pure functions from typed inputs to file contents: no Pulumi, no I/O. The Pulumi
components put their output into ConfigMaps and Secrets; ``tests/contract/`` runs the
same output against the real daemons from Debian packages.
"""

from smartnation.program.daemon_config.mosquitto import (
    DeviceClass,
    render_acl_file,
    render_device_acl_file,
    render_mosquitto_conf,
    render_password_file,
    render_tls_reloader,
)
from smartnation.program.daemon_config.postgres import (
    Database,
    Grant,
    Role,
    render_init_script,
    render_init_sql,
)

__all__ = [
    "Database",
    "DeviceClass",
    "Grant",
    "Role",
    "render_acl_file",
    "render_device_acl_file",
    "render_init_script",
    "render_init_sql",
    "render_mosquitto_conf",
    "render_password_file",
    "render_tls_reloader",
]
