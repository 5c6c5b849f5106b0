#!/bin/bash
# One-shot setup of the compose example's Elasticsearch, run by the es-setup service (in the
# elasticsearch image, which has bash and curl): waits for the node, sets the kibana_system
# password, creates the least-privilege role `seqwatch` from seqwatch-role-kibana.json and the
# user `seqwatch` with it. Idempotent: every call is a PUT/POST that may be repeated.
set -euo pipefail

es="http://elasticsearch:9200"
auth=(-u "elastic:${ELASTIC_PASSWORD:?}")
json=(-H "Content-Type: application/json")

echo "es-setup: waiting for Elasticsearch"
until curl -fsS "${auth[@]}" "$es/_cluster/health?wait_for_status=yellow&timeout=5s" >/dev/null; do
    sleep 2
done

echo "es-setup: setting the kibana_system password"
curl -fsS "${auth[@]}" "${json[@]}" -X POST "$es/_security/user/kibana_system/_password" \
    -d "{\"password\":\"${KIBANA_PASSWORD:?}\"}" >/dev/null

echo "es-setup: creating role seqwatch"
curl -fsS "${auth[@]}" "${json[@]}" -X PUT "$es/_security/role/seqwatch" \
    --data-binary @/setup/seqwatch-role-kibana.json >/dev/null

echo "es-setup: creating user seqwatch"
curl -fsS "${auth[@]}" "${json[@]}" -X PUT "$es/_security/user/seqwatch" \
    -d "{\"password\":\"${SEQWATCH_PASSWORD:?}\",\"roles\":[\"seqwatch\"],\"full_name\":\"seqwatch detection service\"}" >/dev/null

echo "es-setup: done"
