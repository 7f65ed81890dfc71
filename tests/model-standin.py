"""A loopback stand-in for the model API, for checks with the real claude.

usage: model-standin.py PORT COMMAND LOG

Streams one Bash tool call running COMMAND, then answers "Done." once the
tool result comes back; every request and tool result goes to LOG as JSON.
"""
import json, sys, http.server
CMD = sys.argv[2]
LOG = open(sys.argv[3], "a")
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        self.send_response(200); self.send_header("content-type","application/json"); self.end_headers(); self.wfile.write(b"{}")
    def do_POST(self):
        n = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(n) or b"{}")
        LOG.write(json.dumps({"path": self.path, "stream": body.get("stream"), "n": len(body.get("messages", []))}) + "\n"); LOG.flush()
        msgs = body.get("messages", [])
        last = msgs[-1] if msgs else {}
        had_result = isinstance(last.get("content"), list) and any(isinstance(c, dict) and c.get("type") == "tool_result" for c in last["content"])
        if had_result:
            LOG.write(json.dumps({"tool_result": last["content"]}) + "\n"); LOG.flush()
        tools = [t.get("name") for t in body.get("tools", []) or []]
        use_tool = (not had_result) and "Bash" in tools
        if not body.get("stream"):
            msg = {"id":"msg_x","type":"message","role":"assistant","model":body.get("model","m"),"content":[{"type":"text","text":"Done."}],"stop_reason":"end_turn","stop_sequence":None,"usage":{"input_tokens":1,"output_tokens":1}}
            out = json.dumps(msg).encode()
            self.send_response(200); self.send_header("content-type","application/json"); self.send_header("content-length", str(len(out))); self.end_headers(); self.wfile.write(out); return
        self.send_response(200); self.send_header("content-type","text/event-stream"); self.end_headers()
        def ev(t, d):
            self.wfile.write(f"event: {t}\ndata: {json.dumps(d)}\n\n".encode()); self.wfile.flush()
        ev("message_start", {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":body.get("model","m"),"content":[],"stop_reason":None,"stop_sequence":None,"usage":{"input_tokens":1,"output_tokens":1}}})
        if use_tool:
            ev("content_block_start", {"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_01","name":"Bash","input":{}}})
            ev("content_block_delta", {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":json.dumps({"command": CMD, "description": "check"})}})
            stop = "tool_use"
        else:
            ev("content_block_start", {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})
            ev("content_block_delta", {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Done."}})
            stop = "end_turn"
        ev("content_block_stop", {"type":"content_block_stop","index":0})
        ev("message_delta", {"type":"message_delta","delta":{"stop_reason":stop,"stop_sequence":None},"usage":{"output_tokens":1}})
        ev("message_stop", {"type":"message_stop"})
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
