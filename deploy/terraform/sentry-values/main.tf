# Renders the values files from the typed inputs; see README in deploy/.
locals {
  # Where every pod sees the CA bundle: the system trust store path of the chart's Debian-based
  # images (Sentry, Snuba, Relay, taskbroker), so libraries that use the system store read it.
  ca_path = "/etc/ssl/certs/ca-certificates.crt"
  inputs = {
    ca_path          = local.ca_path
    ca_bundle        = var.ca_bundle
    taskworker_pools = var.taskworker_pools
    nodeport         = var.nodeport
    smoke_script     = file("${path.module}/templates/smoke-test.sh")
    chart_version    = var.chart_version
    namespace        = var.namespace
    hostname         = var.hostname
    admin_email      = var.admin_email
    postgres         = var.postgres
    redis            = var.redis
    kafka            = var.kafka
    clickhouse       = var.clickhouse
    s3               = var.s3
    secrets          = var.secrets
    ingress          = var.ingress
    replicas         = var.replicas
    github           = var.github
    agent            = var.agent
  }
}
