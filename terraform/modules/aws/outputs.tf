output "writer_url" {
  description = "The writers' REST API through the load balancer (a standby answers writes with a 307 to the leader)."
  value       = "http://${aws_lb.writers.dns_name}:8000"
}

output "writer_replication_endpoint" {
  description = "Where edges replicate from (QUIC over UDP): the value of their SETPOINT_WRITER."
  value       = "${aws_lb.writers.dns_name}:8000"
}

output "writer_private_ips" {
  description = "Each writer replica's private address."
  value       = aws_instance.writer[*].private_ip
}

output "writer_security_group_id" {
  description = "The writers' security group (edges elsewhere need a rule for UDP 8000 here)."
  value       = aws_security_group.writers.id
}

output "etcd_endpoints" {
  description = "The etcd cluster's client endpoints."
  value       = local.etcd_endpoints
}

output "edge_autoscaling_group_name" {
  description = "The edges' Auto Scaling group."
  value       = module.edges.autoscaling_group_name
}

output "edge_private_ips" {
  description = "The edges running at the last apply."
  value       = module.edges.private_ips
}

output "edge_user_data" {
  description = "The node agent's cloud-init user data, for application hosts of your own."
  value       = module.edges.user_data
  sensitive   = true
}
