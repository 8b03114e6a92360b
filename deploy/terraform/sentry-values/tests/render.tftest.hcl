# Renders the values with realistic inputs and checks the result as YAML.

variables {
  hostname    = "sentry.example.com"
  admin_email = "sre@example.com"
  postgres    = { host = "c-pg.rw.mdb.example.net", port = 6432 }
  redis       = { host = "c-redis.rw.mdb.example.net" }
  kafka = {
    brokers = [
      { host = "kafka-1.mdb.example.net", port = 9091 },
      { host = "kafka-2.mdb.example.net", port = 9091 },
      { host = "kafka-3.mdb.example.net", port = 9091 },
    ]
  }
  clickhouse = { host = "c-ch.rw.mdb.example.net", cluster_name = "sentry-cluster" }
  s3 = {
    endpoint         = "https://storage.example.net"
    region           = "eu-central-1"
    filestore_bucket = "sentry-files"
    nodestore_bucket = "sentry-nodestore"
  }
}

run "external_services_over_tls_with_secrets" {
  command = plan

  assert {
    condition     = yamldecode(output.sentry_values).postgresql.enabled == false && yamldecode(output.sentry_values).redis.enabled == false && yamldecode(output.sentry_values).kafka.enabled == false
    error_message = "every bundled stateful service must be disabled"
  }
  assert {
    condition     = yamldecode(output.sentry_values).externalPostgresql.sslMode == "verify-full" && yamldecode(output.sentry_values).externalPostgresql.port == 6432
    error_message = "PostgreSQL over TLS, hostname verified, on the given port"
  }
  assert {
    condition     = yamldecode(output.sentry_values).externalRedis.ssl == true
    error_message = "Redis over TLS"
  }
  assert {
    condition     = yamldecode(output.sentry_values).externalKafka.security.protocol == "SASL_SSL" && length(yamldecode(output.sentry_values).externalKafka.cluster) == 3
    error_message = "Kafka over SASL_SSL with every broker"
  }
  assert {
    condition     = yamldecode(output.sentry_values).externalKafka.provisioning.replicationFactor == 3
    error_message = "topics replicated three times by default"
  }
  assert {
    condition     = yamldecode(output.sentry_values).externalClickhouse.secure == true && yamldecode(output.sentry_values).externalClickhouse.verify == true && yamldecode(output.sentry_values).externalClickhouse.singleNode == false && yamldecode(output.sentry_values).externalClickhouse.clusterName == "sentry-cluster"
    error_message = "ClickHouse over verified TLS, as a cluster"
  }
  assert {
    condition     = yamldecode(output.sentry_values).filestore.backend == "s3" && yamldecode(output.sentry_values).nodestore.backend == "s3"
    error_message = "filestore and nodestore on S3"
  }
  assert {
    condition     = yamldecode(output.sentry_values).user.existingSecret == "sentry-admin" && yamldecode(output.sentry_values).sentry.existingSecret == "sentry-secret-key"
    error_message = "the admin password and the secret key come from Secrets"
  }
  assert {
    condition     = alltrue([for service in ["externalPostgresql", "externalRedis", "externalClickhouse"] : !contains(keys(yamldecode(output.sentry_values)[service]), "password")])
    error_message = "no password value for any database: only Secret references"
  }
  assert {
    condition     = yamldecode(output.sentry_values).ingress.enabled == true && yamldecode(output.sentry_values).ingress.tls[0].hosts[0] == "sentry.example.com"
    error_message = "an ingress with TLS for the host"
  }
  assert {
    condition     = yamldecode(output.sentry_values).sentry.web.replicas == 2 && yamldecode(output.sentry_values).sentry.taskWorker.replicas == 2 && yamldecode(output.sentry_values).relay.replicas == 2 && length([for m in yamldecode(output.sentry_values).extraManifests : m if m.kind == "PodDisruptionBudget"]) == 3
    error_message = "two web, relay and taskworker replicas with their PodDisruptionBudgets"
  }
  assert {
    condition     = !contains(keys(yamldecode(output.sentry_values).sentry), "worker") && !contains(keys(yamldecode(output.sentry_values).sentry), "cron") && length([for k in keys(yamldecode(output.sentry_values).sentry) : k if startswith(k, "subscriptionConsumer") || k == "ingestProfiles"]) == 0
    error_message = "no key chart 33 removed (sentry.worker, sentry.cron, subscriptionConsumer*, ingestProfiles)"
  }
  assert {
    condition     = yamldecode(output.sentry_values).global.volumeMounts[0].mountPath == "/etc/ssl/certs/ca-certificates.crt" && yamldecode(output.sentry_values).global.volumes[0].configMap.name == "sentry-ca-bundle" && yamldecode(output.sentry_values).externalClickhouse.ca_certs == "/etc/ssl/certs/ca-certificates.crt"
    error_message = "the CA bundle is mounted as every pod's trust store and handed to the ClickHouse client"
  }
  assert {
    condition     = yamldecode(output.agent_values).existingSecret == "sentry-kubernetes-dsn" && yamldecode(output.agent_values).sentry.watchNamespaces == "__all__"
    error_message = "the agent reads its DSN from a Secret"
  }
}

run "nodeport_instead_of_ingress" {
  command = plan

  variables {
    ingress = { enabled = false }
  }

  assert {
    condition     = yamldecode(output.sentry_values).ingress.enabled == false && yamldecode(output.sentry_values).service.type == "ClusterIP"
    error_message = "without an ingress, the chart's services stay ClusterIP"
  }
  assert {
    condition     = toset([for m in yamldecode(output.sentry_values).extraManifests : m.spec.ports[0].nodePort if m.kind == "Service"]) == toset([30900, 30300]) && yamldecode(output.sentry_values).system.url == "http://sentry.example.com:30900"
    error_message = "web on NodePort 30900 (system.url), relay on 30300, nothing else exposed"
  }
}

run "github_sso_from_a_secret" {
  command = plan

  variables {
    github = { app_id = "123456", app_name = "sentry-acme" }
  }

  assert {
    condition     = yamldecode(output.sentry_values).github.existingSecret == "sentry-github" && yamldecode(output.sentry_values).github.appId == "123456"
    error_message = "GitHub SSO keys come from a Secret"
  }
}
