-- wrk: POST a 120-byte JSON body to the publisher endpoint (/pub?id=bench).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"id":"0123456789abcdef0123456789abcdef","channel":"bench","event":"message","data":{"text":"hello, world: 0123456789"}}'
