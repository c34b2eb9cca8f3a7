#!/usr/bin/env bash
# Sends signals to the quickstart broker (docker-compose.yml), one JSON signal per line, each
# keyed by its canonical subject id as containd expects (docs/json.md, docs/operations.md):
# one identity's signals stay in one partition, so its windows and escalations see them all.
#
#   deploy/compose/send-signals.sh                      # examples/signals/seed-scenarios.jsonl
#   deploy/compose/send-signals.sh my-signals.jsonl
#   deploy/compose/send-signals.sh --unique             # fresh ids: decided again, not `duplicate`
#
# A signal id seen again within trust.dedup_window (24h) is decided `duplicate`; --unique
# appends -<epoch seconds> to every id. Needs jq or python3 on the host, and docker compose.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
topic=${TOPIC:-identity.signals.v1}
suffix=""
file=""
for arg in "$@"; do
  case "$arg" in
    --unique) suffix="-$(date +%s)" ;;
    -h | --help) sed -n '2,11p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) file=$arg ;;
  esac
done
file=${file:-$root/examples/signals/seed-scenarios.jsonl}
[ -f "$file" ] || { echo "send-signals: no such file: $file" >&2; exit 1; }

# The canonical subject id (src/signal/subject.rs): a simple subject's required identifier
# members joined with `|`; for `complex` the first valid member of application, user,
# session, device, tenant, org_unit, group; for `aliases` the first valid alias.
# Output: "<key>\t<signal JSON>" per line.
keyed() {
  if command -v jq >/dev/null 2>&1; then
    jq -Rr --arg suffix "$suffix" '
      def members: {"account":["uri"],"email":["email"],"iss_sub":["iss","sub"],"opaque":["id"],
        "phone_number":["phone_number"],"did":["url"],"uri":["uri"],"jwt_id":["iss","jti"],
        "saml_assertion_id":["issuer","assertion_id"],"ip-addresses":["ip-addresses"]};
      def simple_id: . as $s | members[($s.format // $s.subject_type // "")] as $m
        | if $m == null then null
          else [$m[] as $k | ($s.identifiers // {})[$k] // ""] as $v
            | if any($v[]; . == "") then null else $v | join("|") end
          end;
      def canonical: (.format // .subject_type) as $f
        | if $f == "complex" then
            [.application, .user, .session, .device, .tenant, .org_unit, .group]
            | map(select(. != null) | simple_id | select(. != null)) | first
          elif $f == "aliases" then [(.aliases // [])[] | simple_id | select(. != null)] | first
          else simple_id end;
      select(test("\\S")) | . as $line | fromjson
      | ((.subject // {} | canonical) // "") + "\t"
        + (if $suffix == "" then $line else (.id += $suffix | tojson) end)
    ' "$file"
  elif command -v python3 >/dev/null 2>&1; then
    python3 - "$file" "$suffix" <<'PY'
import json, sys
MEMBERS = {"account": ["uri"], "email": ["email"], "iss_sub": ["iss", "sub"], "opaque": ["id"],
           "phone_number": ["phone_number"], "did": ["url"], "uri": ["uri"], "jwt_id": ["iss", "jti"],
           "saml_assertion_id": ["issuer", "assertion_id"], "ip-addresses": ["ip-addresses"]}
def simple_id(s):
    members = MEMBERS.get(s.get("format") or s.get("subject_type") or "")
    if not members:
        return None
    values = [(s.get("identifiers") or {}).get(m) or "" for m in members]
    return None if "" in values else "|".join(values)
def canonical(s):
    f = s.get("format") or s.get("subject_type")
    if f == "complex":
        order = ["application", "user", "session", "device", "tenant", "org_unit", "group"]
        ids = [simple_id(s[m]) for m in order if isinstance(s.get(m), dict)]
    elif f == "aliases":
        ids = [simple_id(a) for a in s.get("aliases") or []]
    else:
        ids = [simple_id(s)]
    return next((i for i in ids if i), None)
path, suffix = sys.argv[1], sys.argv[2]
for line in open(path, encoding="utf-8"):
    line = line.rstrip("\n")
    if not line.strip():
        continue
    signal = json.loads(line)
    key = canonical(signal.get("subject") or {}) or ""
    if suffix:
        signal["id"] = signal.get("id", "") + suffix
        line = json.dumps(signal, separators=(",", ":"))
    print(key + "\t" + line)
PY
  else
    echo "send-signals: needs jq or python3 to key the signals" >&2
    exit 1
  fi
}

if [ "${SEND_SIGNALS_DRY_RUN:-}" = 1 ]; then keyed; exit 0; fi # print what would be sent

if docker compose version >/dev/null 2>&1; then
  compose=(docker compose -f "$root/docker-compose.yml")
elif command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose -f "$root/docker-compose.yml")
else
  echo "send-signals: needs docker compose (or docker-compose)" >&2
  exit 1
fi

keyed | "${compose[@]}" exec -T kafka /opt/kafka/bin/kafka-console-producer.sh \
  --bootstrap-server localhost:9092 --topic "$topic" \
  --property parse.key=true --property "key.separator=$(printf '\t')"
echo "send-signals: sent $(grep -c '[^[:space:]]' "$file") signals to $topic; commands: docker compose logs -f commands"
