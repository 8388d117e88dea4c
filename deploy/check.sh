#!/usr/bin/env bash
# What CI verifies of deploy/ (run by .ci/run): the Prometheus configuration, the
# alert rules and their unit tests, with promtool (Debian package prometheus).
# The Kubernetes manifests and the Dockerfile are not verified here: CI has no
# cluster and cannot pull base images.
set -euo pipefail
cd "$(dirname "$0")/prometheus"
promtool check config prometheus.yml
promtool check rules alerts.yml
promtool test rules alerts_test.yml
