"""nextchat-ls: a Label Studio ML backend around the NExT-Chat model (HTTP service in backend.http.app)."""
