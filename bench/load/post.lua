-- wrk script: POST a real PNG (a 3 drawn on a 280x280 transparent canvas, as the page sends it).
local f = assert(io.open(os.getenv("DIGITS_PNG") or "bench/load/three.png", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "image/png"

local errors = 0
function response(status, headers, body)
  if status ~= 200 then errors = errors + 1 end
end
