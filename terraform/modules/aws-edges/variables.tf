variable "name" {
  description = "Prefix of every resource's name (e.g. setpoint-prod-eu)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name))
    error_message = "name must be 2 to 31 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "vpc_id" {
  description = "The VPC the edges run in."
  type        = string
}

variable "subnet_ids" {
  description = "Subnets the Auto Scaling group spreads the edges over (one per availability zone)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) > 0
    error_message = "subnet_ids must name at least one subnet."
  }
}

variable "ami_id" {
  description = "A Debian 12 (or Ubuntu 24.04) AMI with cloud-init."
  type        = string
}

variable "instance_type" {
  description = "The edges' instance type."
  type        = string
  default     = "t3.small"
}

variable "min_size" {
  description = "Fewest edges."
  type        = number
  default     = 1
}

variable "max_size" {
  description = "Most edges."
  type        = number
  default     = 10

  validation {
    condition     = var.max_size >= 1
    error_message = "max_size must be at least 1."
  }
}

variable "desired_capacity" {
  description = "Edges to run now (between min_size and max_size)."
  type        = number
  default     = 2
}

variable "package_url" {
  description = "HTTPS URL of the setpoint .deb."
  type        = string
}

variable "package_sha256" {
  description = "SHA-256 of that .deb."
  type        = string
}

variable "writers" {
  description = "The writers' replication endpoints (QUIC over UDP), HOST:PORT — the writers' load balancer."
  type        = list(string)
}

variable "writer_tls_name" {
  description = "The name the writers' certificates carry (they are reached through a load balancer whose name they do not carry)."
  type        = string
}

variable "writer_security_group_id" {
  description = "The writers' security group, which gets a rule letting these edges reach the QUIC port. Null when the writers live elsewhere (another region: open it there)."
  type        = string
  default     = null
}

variable "ca_pem" {
  description = "The CA certificate (PEM)."
  type        = string
}

variable "edge_cert_pem" {
  description = "The edges' certificate (PEM), signed by the CA."
  type        = string
}

variable "edge_key_pem" {
  description = "The edges' private key (PEM)."
  type        = string
  sensitive   = true
}

variable "region_label" {
  description = "The region the edges report to the fleet."
  type        = string
  default     = "default"
}

variable "listen" {
  description = "Where each edge serves: 127.0.0.1:8001 for applications on the same host, 0.0.0.0:8001 to serve the network (then set client_cidrs)."
  type        = string
  default     = "127.0.0.1:8001"
}

variable "client_cidrs" {
  description = "Networks whose applications may read from the edges' port 8001 (when listen is not loopback)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.client_cidrs : can(cidrhost(c, 0))])
    error_message = "client_cidrs must be CIDR blocks."
  }
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
