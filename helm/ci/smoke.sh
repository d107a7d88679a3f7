#!/usr/bin/env bash
# Trainee smoke test on a cluster with the chart installed (namespace medai): start trainee1's
# server through the hub API, reach it through the proxy, and check from inside the pod that
# the data is read-only, no service-account token is mounted and the internet is unreachable.
set -euo pipefail
NS=${NS:-medai}
TOKEN=ci-smoke-token-0123456789abcdef0123456789abcdef
kubectl -n "$NS" port-forward svc/proxy-public 18000:80 >/tmp/pf.log 2>&1 &
trap 'kill %1' EXIT
sleep 3
api() { curl -sf -H "Authorization: token $TOKEN" "$@"; }
api -X POST -d '{"profile": "cpu"}' http://127.0.0.1:18000/hub/api/users/trainee1/server || true
for _ in $(seq 120); do
  ready=$(api http://127.0.0.1:18000/hub/api/users/trainee1 | python3 -c \
    'import json,sys; print(json.load(sys.stdin)["servers"].get("",{}).get("ready",False))')
  [ "$ready" = True ] && break
  sleep 5
done
[ "$ready" = True ] || { kubectl -n "$NS" describe pod jupyter-trainee1; exit 1; }
api http://127.0.0.1:18000/user/trainee1/api/status
kubectl -n "$NS" exec jupyter-trainee1 -- python - <<'PY'
import os, socket
assert os.getuid() == 1000
assert not os.path.exists("/var/run/secrets/kubernetes.io/serviceaccount/token")
try:
    open("/data/probe", "w")
    raise SystemExit("/data is writable")
except OSError:
    pass
s = socket.socket(); s.settimeout(5)
try:
    s.connect(("1.1.1.1", 443))
    raise SystemExit("internet reachable from a trainee pod")
except OSError:
    pass
import medai, torch  # the image's software
print("trainee pod ok: uid 1000, no token, /data read-only, no internet; torch", torch.__version__)
PY
