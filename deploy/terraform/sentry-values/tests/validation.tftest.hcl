# Inputs the module refuses, with the variable named.

variables {
  hostname    = "sentry.example.com"
  admin_email = "sre@example.com"
  postgres    = { host = "pg.example.net" }
  redis       = { host = "redis.example.net" }
  kafka       = { brokers = [{ host = "kafka.example.net", port = 9091 }], replication_factor = 1 }
  clickhouse  = { host = "ch.example.net", cluster_name = "sentry-cluster" }
  s3 = {
    endpoint         = "https://storage.example.net"
    region           = "eu-central-1"
    filestore_bucket = "sentry-files"
    nodestore_bucket = "sentry-nodestore"
  }
}

run "postgres_without_tls_is_refused" {
  command = plan
  variables {
    postgres = { host = "pg.example.net", ssl_mode = "disable" }
  }
  expect_failures = [var.postgres]
}

run "postgres_without_hostname_verification_is_refused" {
  command = plan
  variables {
    postgres = { host = "pg.example.net", ssl_mode = "require" }
  }
  expect_failures = [var.postgres]
}

run "a_single_taskworker_replica_is_refused" {
  command = plan
  variables {
    replicas = { taskworker = 1 }
  }
  expect_failures = [var.replicas]
}

run "one_node_port_for_web_and_relay_is_refused" {
  command = plan
  variables {
    nodeport = { web = 30300, relay = 30300 }
  }
  expect_failures = [var.nodeport]
}

run "a_replication_factor_above_the_brokers_is_refused" {
  command = plan
  variables {
    kafka = { brokers = [{ host = "kafka.example.net", port = 9091 }], replication_factor = 3 }
  }
  expect_failures = [var.kafka]
}

run "plain_http_object_storage_is_refused" {
  command = plan
  variables {
    s3 = {
      endpoint         = "http://storage.example.net"
      region           = "eu-central-1"
      filestore_bucket = "sentry-files"
      nodestore_bucket = "sentry-nodestore"
    }
  }
  expect_failures = [var.s3]
}

run "a_single_web_replica_is_refused" {
  command = plan
  variables {
    replicas = { web = 1 }
  }
  expect_failures = [var.replicas]
}

run "an_older_chart_is_refused" {
  command = plan
  variables {
    chart_version = "25.20.0"
  }
  expect_failures = [var.chart_version]
}
