output "autoscaling_group_name" {
  description = "The edges' Auto Scaling group."
  value       = aws_autoscaling_group.edges.name
}

output "security_group_id" {
  description = "The edges' security group."
  value       = aws_security_group.edges.id
}

output "private_ips" {
  description = "The private addresses of the edges running at the last apply."
  value       = data.aws_instances.edges.private_ips
}

output "user_data" {
  description = "The node agent's cloud-init user data, for your own launch templates."
  value       = module.node_agent.user_data
  sensitive   = true
}
