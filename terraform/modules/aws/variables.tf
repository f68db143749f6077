variable "name" {
  description = "Prefix of every resource's name (e.g. setpoint-prod)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name))
    error_message = "name must be 2 to 21 lowercase letters, digits or dashes, starting with a letter (load balancer names are short)."
  }
}

variable "vpc_id" {
  description = "The VPC everything runs in."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets, one per availability zone: etcd members and writers are spread over them in order, the load balancer and the edges use them all."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "subnet_ids must name at least two subnets (two availability zones)."
  }
}

variable "etcd_private_ips" {
  description = "The three etcd members' fixed private addresses, one in each of the first subnets in order (etcd's initial cluster names them)."
  type        = list(string)

  validation {
    condition     = length(var.etcd_private_ips) == 3 && alltrue([for ip in var.etcd_private_ips : can(cidrhost("${ip}/32", 0))])
    error_message = "etcd_private_ips must be exactly three IPv4 addresses."
  }
}

variable "ami_id" {
  description = "A Debian 12 AMI with cloud-init (etcd comes from Debian's etcd-server package)."
  type        = string
}

variable "etcd_instance_type" {
  description = "The etcd members' instance type."
  type        = string
  default     = "t3.medium"
}

variable "writer_instance_type" {
  description = "The writers' instance type."
  type        = string
  default     = "t3.medium"
}

variable "writer_count" {
  description = "Writer replicas on the etcd cluster: one leads, the others redirect writes to it (307) and take over when it fails."
  type        = number
  default     = 2

  validation {
    condition     = var.writer_count >= 1 && var.writer_count <= 5
    error_message = "writer_count must be between 1 and 5."
  }
}

variable "internal" {
  description = "Whether the writers' load balancer is internal (reachable only in the VPC and its peers)."
  type        = bool
  default     = true
}

variable "client_cidrs" {
  description = "Networks that may call the writers' REST API (operators, CI, the console)."
  type        = list(string)

  validation {
    condition     = length(var.client_cidrs) > 0 && alltrue([for c in var.client_cidrs : can(cidrhost(c, 0))])
    error_message = "client_cidrs must be one or more CIDR blocks."
  }
}

variable "package_url" {
  description = "HTTPS URL of the setpoint .deb (scripts/package --release) every writer and edge installs."
  type        = string

  validation {
    condition     = can(regex("^https://[^\\s]+\\.deb$", var.package_url))
    error_message = "package_url must be an https:// URL of a .deb file."
  }
}

variable "package_sha256" {
  description = "SHA-256 of that .deb (hex)."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.package_sha256))
    error_message = "package_sha256 must be 64 lowercase hex digits."
  }
}

variable "writer_tls_name" {
  description = "The name on the writers' certificate, which edges check (they reach the writers through the load balancer)."
  type        = string
  default     = "setpoint-writer"
}

variable "ca_pem" {
  description = "The CA certificate (PEM) of the fleet's mutual TLS."
  type        = string
}

variable "writer_cert_pem" {
  description = "The writers' certificate (PEM), carrying writer_tls_name."
  type        = string
}

variable "writer_key_pem" {
  description = "The writers' private key (PEM)."
  type        = string
  sensitive   = true
}

variable "edge_cert_pem" {
  description = "The edges' certificate (PEM)."
  type        = string
}

variable "edge_key_pem" {
  description = "The edges' private key (PEM)."
  type        = string
  sensitive   = true
}

variable "admin_key" {
  description = "The first admin's API key (spk_…), set on a store without accounts."
  type        = string
  sensitive   = true

  validation {
    condition     = startswith(var.admin_key, "spk_")
    error_message = "admin_key must be a Setpoint API key (spk_…)."
  }
}

variable "edges" {
  description = "The edge Auto Scaling group: instance type, sizes, where edges listen, who may read from them."
  type = object({
    instance_type    = optional(string, "t3.small")
    min_size         = optional(number, 1)
    max_size         = optional(number, 10)
    desired_capacity = optional(number, 2)
    listen           = optional(string, "127.0.0.1:8001")
    client_cidrs     = optional(list(string), [])
  })
  default = {}
}

variable "region_label" {
  description = "The region the writers and edges report to the fleet."
  type        = string
  default     = "default"
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
