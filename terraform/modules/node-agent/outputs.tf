output "user_data" {
  description = "The #cloud-config document to pass as a host's user data."
  value       = "#cloud-config\n${yamlencode(local.cloud_config)}"
  sensitive   = true
}

output "edge_env" {
  description = "The /etc/setpoint/edge.env it writes (no secrets: the key is a file)."
  value       = local.edge_env
}
