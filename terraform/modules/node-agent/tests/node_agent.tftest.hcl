# `tofu test` in this module: plans only (the module has no resources and no providers) and
# asserts on what it renders. scripts/check-deploy also hands the rendered document to
# `cloud-init schema`.

variables {
  package_url    = "https://packages.example.com/setpoint_0.1.0-1_amd64.deb"
  package_sha256 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
  writers        = ["10.0.0.11:8000", "10.0.0.12:8000"]
  ca_pem         = "-----BEGIN CERTIFICATE-----\nTEST-CA\n-----END CERTIFICATE-----\n"
  cert_pem       = "-----BEGIN CERTIFICATE-----\nTEST-EDGE\n-----END CERTIFICATE-----\n"
  key_pem        = "-----BEGIN PRIVATE KEY-----\nTEST-KEY\n-----END PRIVATE KEY-----\n"
}

run "renders_a_cloud_config_that_installs_the_package_then_enables_the_edge" {
  command = plan

  assert {
    condition     = startswith(output.user_data, "#cloud-config\n")
    error_message = "user data must start with #cloud-config"
  }
  assert {
    condition     = [for f in yamldecode(output.user_data).write_files : f.path] == ["/etc/setpoint/tls/ca.pem", "/etc/setpoint/tls/edge.pem", "/etc/setpoint/tls/edge.key", "/etc/setpoint/edge.env"]
    error_message = "the certificates and edge.env must be written, in that order"
  }
  assert {
    condition     = [for f in yamldecode(output.user_data).write_files : f.permissions if f.path == "/etc/setpoint/tls/edge.key"] == ["0600"]
    error_message = "the edge's private key must be written 0600"
  }
  assert {
    condition     = yamldecode(output.user_data).write_files[2].content == var.key_pem
    error_message = "the key must be written verbatim"
  }
  assert {
    condition     = strcontains(yamldecode(output.user_data).runcmd[0][2], "sha256sum -c") && strcontains(yamldecode(output.user_data).runcmd[0][2], "--force-confold")
    error_message = "the package must be checked against its SHA-256 and keep the edge.env written here"
  }
  assert {
    condition     = yamldecode(output.user_data).runcmd[length(yamldecode(output.user_data).runcmd) - 1] == ["systemctl", "enable", "--now", "setpoint-edge.service"]
    error_message = "the edge must be enabled last, after the package is installed"
  }
  assert {
    condition     = strcontains(output.edge_env, "SETPOINT_WRITER=10.0.0.11:8000,10.0.0.12:8000\n") && strcontains(output.edge_env, "SETPOINT_LISTEN=127.0.0.1:8001\n")
    error_message = "edge.env must name every writer and listen on loopback by default"
  }
  assert {
    condition     = !strcontains(output.edge_env, "PRIVATE KEY") && !strcontains(output.edge_env, "SETPOINT_JOIN") && !strcontains(output.edge_env, "SETPOINT_METRICS_PUBLIC")
    error_message = "edge.env must hold no key, and no gossip or public metrics unless asked"
  }
}

run "optional_settings_reach_edge_env" {
  command = plan

  variables {
    writer_name    = "writer.setpoint.internal"
    gossip_join    = ["10.0.0.11:7946"]
    metrics_public = true
    region         = "eu-west-1"
    extra_env      = { SETPOINT_HEARTBEAT_MS = "2000" }
  }

  assert {
    condition     = alltrue([for line in ["SETPOINT_WRITER_NAME=writer.setpoint.internal", "SETPOINT_JOIN=10.0.0.11:7946", "SETPOINT_METRICS_PUBLIC=true", "SETPOINT_REGION=eu-west-1", "SETPOINT_HEARTBEAT_MS=2000"] : strcontains(output.edge_env, "${line}\n")])
    error_message = "every optional setting must reach edge.env"
  }
}

run "refuses_a_package_without_a_valid_checksum" {
  command = plan

  variables {
    package_sha256 = "not-a-checksum"
  }

  expect_failures = [var.package_sha256]
}

run "refuses_a_plain_http_package_url" {
  command = plan

  variables {
    package_url = "http://packages.example.com/setpoint.deb"
  }

  expect_failures = [var.package_url]
}

run "refuses_no_writers" {
  command = plan

  variables {
    writers = []
  }

  expect_failures = [var.writers]
}

run "refuses_a_setting_that_is_not_setpoint_s" {
  command = plan

  variables {
    extra_env = { PATH = "/tmp" }
  }

  expect_failures = [var.extra_env]
}
