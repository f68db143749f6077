variable "package_url" {
  description = "Where the host downloads the setpoint .deb (scripts/package --release), over HTTPS."
  type        = string

  validation {
    condition     = can(regex("^https://[^\\s]+\\.deb$", var.package_url))
    error_message = "package_url must be an https:// URL of a .deb file."
  }
}

variable "package_sha256" {
  description = "SHA-256 of that .deb (hex): the host refuses a download that does not match."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.package_sha256))
    error_message = "package_sha256 must be 64 lowercase hex digits."
  }
}

variable "writers" {
  description = "The writers' replication endpoints (QUIC over UDP), HOST:PORT: any replica feeds, and the edge moves to the next after a failure."
  type        = list(string)

  validation {
    condition     = length(var.writers) > 0 && alltrue([for w in var.writers : can(regex("^[^\\s:,]+:[0-9]{1,5}$", w))])
    error_message = "writers must be a non-empty list of HOST:PORT."
  }
}

variable "writer_name" {
  description = "The name the writers' certificates carry, when it is not the host part of each writer (e.g. they sit behind a load balancer)."
  type        = string
  default     = null
}

variable "ca_pem" {
  description = "The CA certificate (PEM) the writers' certificates chain to."
  type        = string

  validation {
    condition     = startswith(trimspace(var.ca_pem), "-----BEGIN CERTIFICATE-----")
    error_message = "ca_pem must be a PEM certificate."
  }
}

variable "cert_pem" {
  description = "The edges' client certificate (PEM), signed by the CA."
  type        = string

  validation {
    condition     = startswith(trimspace(var.cert_pem), "-----BEGIN CERTIFICATE-----")
    error_message = "cert_pem must be a PEM certificate."
  }
}

variable "key_pem" {
  description = "The private key (PEM) of cert_pem."
  type        = string
  sensitive   = true

  validation {
    condition     = can(regex("^-----BEGIN [A-Z ]*PRIVATE KEY-----", trimspace(var.key_pem)))
    error_message = "key_pem must be a PEM private key."
  }
}

variable "listen" {
  description = "Where the node agent serves this host's applications (HTTP, SSE, gRPC on one port). Loopback keeps it to the host."
  type        = string
  default     = "127.0.0.1:8001"

  validation {
    condition     = can(regex("^[^\\s]+:[0-9]{1,5}$", var.listen))
    error_message = "listen must be ADDRESS:PORT."
  }
}

variable "region" {
  description = "The region this edge reports to the fleet."
  type        = string
  default     = "default"

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]{1,64}$", var.region))
    error_message = "region must be 1 to 64 letters, digits, dots, dashes or underscores."
  }
}

variable "gossip_join" {
  description = "Gossip seeds (the writers' SETPOINT_GOSSIP addresses, IP:PORT). Empty: no gossip membership."
  type        = list(string)
  default     = []
}

variable "metrics_public" {
  description = "Serve /metrics without an API key (then firewall the port to the scraper)."
  type        = bool
  default     = false
}

variable "extra_env" {
  description = "More SETPOINT_* settings for /etc/setpoint/edge.env (`setpoint edge --help` lists them)."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k, v in var.extra_env : can(regex("^SETPOINT_[A-Z0-9_]+$", k)) && !can(regex("[\\n\\r]", v))])
    error_message = "extra_env keys must be SETPOINT_* names and values single lines."
  }
}
