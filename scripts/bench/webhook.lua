-- wrk script: POST a real Hotmart purchase to the edge, as Hotmart does.
local f = assert(io.open(os.getenv("BODY_FILE") or "tests/fixtures/hotmart/purchase_approved.json", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-HOTMART-HOTTOK"] = os.getenv("HOTTOK") or "bench-hottok"
