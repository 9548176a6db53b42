"""Deep index pages over HTTP: starts the release binary on loopback with a
fresh embedded store, POSTs 20,000 users, then times 200 GETs each of the
first page (startIndex=1) and the last (startIndex=19901), count=100.

    cargo build --release && python3 scripts/deep_pages_http.py
"""
import json, subprocess, sys, time, tempfile, os, statistics, urllib.request, socket
from concurrent.futures import ThreadPoolExecutor
s=socket.socket(); s.bind(("127.0.0.1",0)); port=s.getsockname()[1]; s.close()
data=tempfile.mkdtemp()
tok="deep-bench-token-0123456789"
env=dict(os.environ, SCIM_DEMO_TOKEN=tok, RUST_LOG="warn")
p=subprocess.Popen(["target/release/scim-provisioning","serve","--port",str(port),"--bind","127.0.0.1","--data-dir",data,"--demo-tenant","bench"],env=env,stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL)
base=f"http://127.0.0.1:{port}/scim/v2/bench"
for _ in range(100):
    try: urllib.request.urlopen(base+"/ServiceProviderConfig"); break
    except Exception: time.sleep(0.1)
H={"Authorization":"Bearer "+tok,"Content-Type":"application/scim+json"}
def post(i):
    b=json.dumps({"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":f"u{i:05d}@bench.example","active":True}).encode()
    urllib.request.urlopen(urllib.request.Request(base+"/Users",data=b,headers=H,method="POST")).read()
t=time.time()
with ThreadPoolExecutor(16) as ex: list(ex.map(post, range(20000)))
print(f"seeded 20000 users in {time.time()-t:.1f} s")
def get(start):
    t=time.perf_counter()
    r=urllib.request.urlopen(urllib.request.Request(base+f"/Users?startIndex={start}&count=100",headers=H)).read()
    d=time.perf_counter()-t
    assert len(json.loads(r)["Resources"])==100
    return d
for s_ in (1,19901): get(s_)
res={}
for start in (1,19901):
    ts=[get(start) for _ in range(200)]
    res[start]=statistics.median(ts)*1000
print(f"GET /Users?startIndex=1&count=100: median {res[1]:.2f} ms; startIndex=19901: median {res[19901]:.2f} ms; ratio {res[19901]/res[1]:.2f}")
p.terminate()
