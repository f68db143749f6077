# Setpoint on AWS, the reference deployment: a three-member etcd cluster, writer replicas on it
# behind one network load balancer (REST over TCP 8000, QUIC over UDP 8000), and an Auto
# Scaling group of edges (../aws-edges, with ../node-agent's user data). Security groups open
# exactly the design's ports: etcd's client port to the writers and its peer port among the
# members; the writers' REST port to client_cidrs and the load balancer's health checks; their
# QUIC port to the edges only.

data "aws_vpc" "this" {
  id = var.vpc_id
}

locals {
  etcd_endpoints = [for ip in var.etcd_private_ips : "${ip}:2379"]
  etcd_cluster   = join(",", [for i, ip in var.etcd_private_ips : "etcd-${i}=http://${ip}:2380"])
  tls_files = [
    { path = "/etc/setpoint/tls/ca.pem", permissions = "0644", owner = "root:root", content = var.ca_pem },
    { path = "/etc/setpoint/tls/writer.pem", permissions = "0644", owner = "root:root", content = var.writer_cert_pem },
    { path = "/etc/setpoint/tls/writer.key", permissions = "0600", owner = "root:root", content = var.writer_key_pem },
    { path = "/etc/setpoint/admin.key", permissions = "0600", owner = "root:root", content = var.admin_key },
  ]
  install = join(" && ", [
    "curl -fsSL --retry 5 -o /run/setpoint.deb '${var.package_url}'",
    "echo '${var.package_sha256}  /run/setpoint.deb' | sha256sum -c -",
    "DEBIAN_FRONTEND=noninteractive apt-get install -y -o Dpkg::Options::=--force-confold /run/setpoint.deb",
    "rm -f /run/setpoint.deb",
  ])
}

# ---- security groups -----------------------------------------------------------------------

resource "aws_security_group" "etcd" {
  name_prefix = "${var.name}-etcd-"
  description = "Setpoint etcd members"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-etcd" })
}

resource "aws_security_group" "writers" {
  name_prefix = "${var.name}-writers-"
  description = "Setpoint writers"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-writers" })
}

resource "aws_vpc_security_group_ingress_rule" "etcd_clients" {
  security_group_id            = aws_security_group.etcd.id
  description                  = "etcd client port, from the writers"
  ip_protocol                  = "tcp"
  from_port                    = 2379
  to_port                      = 2379
  referenced_security_group_id = aws_security_group.writers.id
}

resource "aws_vpc_security_group_ingress_rule" "etcd_peers" {
  security_group_id            = aws_security_group.etcd.id
  description                  = "etcd peer port, among the members"
  ip_protocol                  = "tcp"
  from_port                    = 2380
  to_port                      = 2380
  referenced_security_group_id = aws_security_group.etcd.id
}

resource "aws_vpc_security_group_egress_rule" "etcd_all" {
  security_group_id = aws_security_group.etcd.id
  description       = "package downloads and peers"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_ingress_rule" "writers_rest" {
  for_each = toset(var.client_cidrs)

  security_group_id = aws_security_group.writers.id
  description       = "REST API"
  ip_protocol       = "tcp"
  from_port         = 8000
  to_port           = 8000
  cidr_ipv4         = each.value
}

# The load balancer's health checks come from its own addresses in the VPC.
resource "aws_vpc_security_group_ingress_rule" "writers_health" {
  security_group_id = aws_security_group.writers.id
  description       = "load balancer health checks (/readyz)"
  ip_protocol       = "tcp"
  from_port         = 8000
  to_port           = 8000
  cidr_ipv4         = data.aws_vpc.this.cidr_block
}

resource "aws_vpc_security_group_egress_rule" "writers_all" {
  security_group_id = aws_security_group.writers.id
  description       = "etcd, package downloads, secrets store, alert webhook"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

# ---- etcd ----------------------------------------------------------------------------------

resource "aws_instance" "etcd" {
  count = 3

  ami                    = var.ami_id
  instance_type          = var.etcd_instance_type
  subnet_id              = var.subnet_ids[count.index % length(var.subnet_ids)]
  private_ip             = var.etcd_private_ips[count.index]
  vpc_security_group_ids = [aws_security_group.etcd.id]
  tags                   = merge(var.tags, { Name = "${var.name}-etcd-${count.index}", "setpoint:role" = "etcd" })

  metadata_options {
    http_tokens = "required"
  }

  user_data = "#cloud-config\n${yamlencode({
    packages = ["etcd-server"]
    write_files = [{
      path        = "/etc/default/etcd"
      permissions = "0644"
      content = join("\n", [
        "ETCD_NAME=etcd-${count.index}",
        "ETCD_DATA_DIR=/var/lib/etcd/default",
        "ETCD_LISTEN_CLIENT_URLS=http://${var.etcd_private_ips[count.index]}:2379,http://127.0.0.1:2379",
        "ETCD_ADVERTISE_CLIENT_URLS=http://${var.etcd_private_ips[count.index]}:2379",
        "ETCD_LISTEN_PEER_URLS=http://${var.etcd_private_ips[count.index]}:2380",
        "ETCD_INITIAL_ADVERTISE_PEER_URLS=http://${var.etcd_private_ips[count.index]}:2380",
        "ETCD_INITIAL_CLUSTER=${local.etcd_cluster}",
        "ETCD_INITIAL_CLUSTER_STATE=new",
        "ETCD_INITIAL_CLUSTER_TOKEN=${var.name}",
        "",
      ])
    }]
    runcmd = [["systemctl", "restart", "etcd.service"]]
  })}"

  # The initial cluster is fixed at creation; members are replaced one by one with etcdctl.
  lifecycle {
    ignore_changes = [user_data]
  }
}

# ---- writers -------------------------------------------------------------------------------

resource "aws_instance" "writer" {
  count = var.writer_count

  ami                    = var.ami_id
  instance_type          = var.writer_instance_type
  subnet_id              = var.subnet_ids[count.index % length(var.subnet_ids)]
  vpc_security_group_ids = [aws_security_group.writers.id]
  tags                   = merge(var.tags, { Name = "${var.name}-writer-${count.index}", "setpoint:role" = "writer" })

  metadata_options {
    http_tokens = "required"
  }

  # Each replica has its own id; it advertises its host name (the default for 0.0.0.0), which
  # standbys put in their 307s.
  user_data = "#cloud-config\n${yamlencode({
    package_update = true
    packages       = ["curl", "ca-certificates"]
    write_files = concat(local.tls_files, [{
      path        = "/etc/setpoint/writer.env"
      permissions = "0640"
      owner       = "root:root"
      content = join("\n", [
        "SETPOINT_STORE=etcd://${join(",", local.etcd_endpoints)}",
        "SETPOINT_LISTEN=0.0.0.0:8000",
        "SETPOINT_ID=${var.name}-writer-${count.index}",
        "SETPOINT_REGION=${var.region_label}",
        "SETPOINT_CA=/etc/setpoint/tls/ca.pem",
        "SETPOINT_CERT=/etc/setpoint/tls/writer.pem",
        "SETPOINT_KEY=/etc/setpoint/tls/writer.key",
        "SETPOINT_ADMIN_KEY_FILE=/etc/setpoint/admin.key",
        "SETPOINT_LOG_FORMAT=json",
        "",
      ])
    }])
    runcmd = [
      ["sh", "-c", local.install],
      ["chgrp", "setpoint", "/etc/setpoint/tls", "/etc/setpoint/tls/writer.key", "/etc/setpoint/admin.key", "/etc/setpoint/writer.env"],
      ["chmod", "0640", "/etc/setpoint/tls/writer.key", "/etc/setpoint/admin.key"],
      ["systemctl", "enable", "--now", "setpoint-writer.service"],
    ]
  })}"

  # A new package or setting must not restart every writer at once: replace them one at a time
  # (README: Upgrades).
  lifecycle {
    ignore_changes = [user_data]
  }

  depends_on = [aws_instance.etcd]
}

# ---- the writers' load balancer ------------------------------------------------------------

resource "aws_lb" "writers" {
  name               = "${var.name}-writers"
  load_balancer_type = "network"
  internal           = var.internal
  subnets            = var.subnet_ids
  security_groups    = [aws_security_group.writers.id]
  tags               = var.tags
}

resource "aws_lb_target_group" "rest" {
  name_prefix = "sprest"
  port        = 8000
  protocol    = "TCP"
  vpc_id      = var.vpc_id
  target_type = "instance"

  # Leader and standbys alike answer /readyz 200 once their store answers.
  health_check {
    protocol = "HTTP"
    path     = "/readyz"
    port     = "8000"
  }
}

resource "aws_lb_target_group" "quic" {
  name_prefix = "spquic"
  port        = 8000
  protocol    = "UDP"
  vpc_id      = var.vpc_id
  target_type = "instance"

  health_check {
    protocol = "HTTP"
    path     = "/readyz"
    port     = "8000"
  }
}

resource "aws_lb_listener" "rest" {
  load_balancer_arn = aws_lb.writers.arn
  port              = 8000
  protocol          = "TCP"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.rest.arn
  }
}

resource "aws_lb_listener" "quic" {
  load_balancer_arn = aws_lb.writers.arn
  port              = 8000
  protocol          = "UDP"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.quic.arn
  }
}

resource "aws_lb_target_group_attachment" "rest" {
  count = var.writer_count

  target_group_arn = aws_lb_target_group.rest.arn
  target_id        = aws_instance.writer[count.index].id
  port             = 8000
}

resource "aws_lb_target_group_attachment" "quic" {
  count = var.writer_count

  target_group_arn = aws_lb_target_group.quic.arn
  target_id        = aws_instance.writer[count.index].id
  port             = 8000
}

# ---- edges ---------------------------------------------------------------------------------

module "edges" {
  source = "../aws-edges"

  name                     = var.name
  vpc_id                   = var.vpc_id
  subnet_ids               = var.subnet_ids
  ami_id                   = var.ami_id
  instance_type            = var.edges.instance_type
  min_size                 = var.edges.min_size
  max_size                 = var.edges.max_size
  desired_capacity         = var.edges.desired_capacity
  listen                   = var.edges.listen
  client_cidrs             = var.edges.client_cidrs
  package_url              = var.package_url
  package_sha256           = var.package_sha256
  writers                  = ["${aws_lb.writers.dns_name}:8000"]
  writer_tls_name          = var.writer_tls_name
  writer_security_group_id = aws_security_group.writers.id
  ca_pem                   = var.ca_pem
  edge_cert_pem            = var.edge_cert_pem
  edge_key_pem             = var.edge_key_pem
  region_label             = var.region_label
  tags                     = var.tags
}
