#!/bin/sh
# Regenerates card-service.envoy.yaml; test/envoy/bootstrap.test.ts checks the committed
# file equals a fresh run. Extra arguments are passed on (the test adds --out).
cd "$(dirname "$0")/../.." || exit 1
exec node bin/palisade.js envoy bootstrap \
  --service-name card-service \
  --spiffe-id spiffe://bank.example/ns/payments/sa/card-service \
  --app-port 8080 \
  --sds-socket /run/palisade/agent.sock \
  --ca-jwks-url https://ca.bank.example:8443/v1/jwks \
  --identity-issuer https://login.bank.example \
  --identity-jwks-uri https://login.bank.example/.well-known/jwks.json \
  --identity-audience card-service \
  --routes examples/envoy/card-service.routes.json \
  --egress-filter /opt/palisade/filters/egress.wasm \
  --out examples/envoy/card-service.envoy.yaml \
  "$@"
