"""What users read: the health report and the dashboards, alert rules and runbooks."""
