output "sentry_values" {
  description = "Values for the sentry chart (helm -f)."
  value       = templatefile("${path.module}/templates/sentry-values.yaml.tftpl", local.inputs)
}

output "agent_values" {
  description = "Values for helm/sentry-kubernetes, reporting into this Sentry."
  value       = templatefile("${path.module}/templates/agent-values.yaml.tftpl", local.inputs)
}
