# Renders the cloud-init user data of a host running the Setpoint edge as its node agent: the
# certificates and /etc/setpoint/edge.env are written first, then the .deb is downloaded,
# checked against its SHA-256 and installed (keeping the edge.env written here: it is a
# conffile, and the package makes no certificates when they exist), and only then is
# setpoint-edge.service enabled and started — the package itself enables nothing.

locals {
  settings = merge(
    {
      SETPOINT_WRITER     = join(",", var.writers)
      SETPOINT_LISTEN     = var.listen
      SETPOINT_REGION     = var.region
      SETPOINT_CA         = "/etc/setpoint/tls/ca.pem"
      SETPOINT_CERT       = "/etc/setpoint/tls/edge.pem"
      SETPOINT_KEY        = "/etc/setpoint/tls/edge.key"
      SETPOINT_DATA_DIR   = "/var/lib/setpoint/edge"
      SETPOINT_LOG_FORMAT = "json"
    },
    var.writer_name == null ? {} : { SETPOINT_WRITER_NAME = var.writer_name },
    length(var.gossip_join) == 0 ? {} : { SETPOINT_JOIN = join(",", var.gossip_join) },
    var.metrics_public ? { SETPOINT_METRICS_PUBLIC = "true" } : {},
    var.extra_env,
  )

  edge_env = join("", concat(
    ["# Written by cloud-init (terraform/modules/node-agent); see `setpoint edge --help`.\n"],
    [for name in sort(keys(local.settings)) : "${name}=${local.settings[name]}\n"],
  ))

  install = join(" && ", [
    "curl -fsSL --retry 5 -o /run/setpoint.deb '${var.package_url}'",
    "echo '${var.package_sha256}  /run/setpoint.deb' | sha256sum -c -",
    "DEBIAN_FRONTEND=noninteractive apt-get install -y -o Dpkg::Options::=--force-confold /run/setpoint.deb",
    "rm -f /run/setpoint.deb",
  ])

  cloud_config = {
    package_update = true
    packages       = ["curl", "ca-certificates"]
    write_files = [
      { path = "/etc/setpoint/tls/ca.pem", permissions = "0644", owner = "root:root", content = var.ca_pem },
      { path = "/etc/setpoint/tls/edge.pem", permissions = "0644", owner = "root:root", content = var.cert_pem },
      { path = "/etc/setpoint/tls/edge.key", permissions = "0600", owner = "root:root", content = var.key_pem },
      { path = "/etc/setpoint/edge.env", permissions = "0640", owner = "root:root", content = local.edge_env },
    ]
    runcmd = [
      ["sh", "-c", local.install],
      # The package made the setpoint user; the key and the settings become readable to it.
      ["chgrp", "setpoint", "/etc/setpoint/tls", "/etc/setpoint/tls/edge.key", "/etc/setpoint/edge.env"],
      ["chmod", "0640", "/etc/setpoint/tls/edge.key"],
      ["systemctl", "enable", "--now", "setpoint-edge.service"],
    ]
  }
}
