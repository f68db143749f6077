# The node agent's cloud-init user data alone, for hosts made by other means (another cloud, a
# VM template, bare metal with cloud-init's NoCloud): `tofu apply`, then
# `tofu output -raw user_data > user-data.yaml`.

terraform {
  required_version = ">= 1.6.0"
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
  description = "The writers' replication endpoints, HOST:PORT."
  type        = list(string)
}

variable "tls_dir" {
  description = "A directory holding ca.pem, edge.pem and edge.key (`setpoint certs --out DIR` makes a dev set)."
  type        = string
}

module "node_agent" {
  source = "../../modules/node-agent"

  package_url    = var.package_url
  package_sha256 = var.package_sha256
  writers        = var.writers
  ca_pem         = file("${var.tls_dir}/ca.pem")
  cert_pem       = file("${var.tls_dir}/edge.pem")
  key_pem        = file("${var.tls_dir}/edge.key")
}

output "user_data" {
  description = "The #cloud-config document."
  value       = module.node_agent.user_data
  sensitive   = true
}
