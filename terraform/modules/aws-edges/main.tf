# An Auto Scaling group of hosts running the Setpoint edge as their node agent: the user data
# comes from ../node-agent, the security group lets the edges reach the writers' QUIC port and,
# when they serve the network, applications reach theirs.

module "node_agent" {
  source = "../node-agent"

  package_url    = var.package_url
  package_sha256 = var.package_sha256
  writers        = var.writers
  writer_name    = var.writer_tls_name
  ca_pem         = var.ca_pem
  cert_pem       = var.edge_cert_pem
  key_pem        = var.edge_key_pem
  listen         = var.listen
  region         = var.region_label
}

resource "aws_security_group" "edges" {
  name_prefix = "${var.name}-edges-"
  description = "Setpoint edges (node agents)"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-edges" })

  lifecycle {
    create_before_destroy = true
  }
}

# The edges fetch the package and reach the writers and the secrets store.
resource "aws_vpc_security_group_egress_rule" "edges_all" {
  security_group_id = aws_security_group.edges.id
  description       = "package downloads, writers, secrets store"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_ingress_rule" "edges_clients" {
  for_each = toset(var.client_cidrs)

  security_group_id = aws_security_group.edges.id
  description       = "applications read and watch (HTTP, SSE, gRPC)"
  ip_protocol       = "tcp"
  from_port         = 8001
  to_port           = 8001
  cidr_ipv4         = each.value
}

# The writers' QUIC port, opened to exactly these edges (the load balancer keeps the source).
resource "aws_vpc_security_group_ingress_rule" "writers_quic_from_edges" {
  count = var.writer_security_group_id == null ? 0 : 1

  security_group_id            = var.writer_security_group_id
  description                  = "replication (QUIC) from ${var.name} edges"
  ip_protocol                  = "udp"
  from_port                    = 8000
  to_port                      = 8000
  referenced_security_group_id = aws_security_group.edges.id
}

resource "aws_launch_template" "edges" {
  name_prefix            = "${var.name}-edge-"
  image_id               = var.ami_id
  instance_type          = var.instance_type
  user_data              = base64encode(module.node_agent.user_data)
  vpc_security_group_ids = [aws_security_group.edges.id]
  tags                   = var.tags

  metadata_options {
    http_tokens   = "required"
    http_endpoint = "enabled"
  }

  tag_specifications {
    resource_type = "instance"
    tags          = merge(var.tags, { Name = "${var.name}-edge", "setpoint:role" = "edge" })
  }
}

resource "aws_autoscaling_group" "edges" {
  name_prefix         = "${var.name}-edges-"
  min_size            = var.min_size
  max_size            = var.max_size
  desired_capacity    = var.desired_capacity
  vpc_zone_identifier = var.subnet_ids
  health_check_type   = "EC2"

  launch_template {
    id      = aws_launch_template.edges.id
    version = aws_launch_template.edges.latest_version
  }

  # A new package or setting rolls through the edges a few at a time; each new edge serves
  # once it holds a snapshot.
  instance_refresh {
    strategy = "Rolling"
    preferences {
      min_healthy_percentage = 90
    }
  }

  tag {
    key                 = "setpoint:role"
    value               = "edge"
    propagate_at_launch = true
  }
}

# The edges running now (the group changes them; this is what the last apply saw).
data "aws_instances" "edges" {
  instance_tags = {
    "aws:autoscaling:groupName" = aws_autoscaling_group.edges.name
  }
  instance_state_names = ["running"]
}
