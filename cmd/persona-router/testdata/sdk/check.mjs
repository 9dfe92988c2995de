// Fetches a session token from a running persona-router exactly as a browser frontend would,
// and hands it to createClient() of Anam's own SDK, which decodes the token and refuses
// anything that is not a JWT. Usage: node check.mjs http://127.0.0.1:PORT
import { createClient } from "@anam-ai/js-sdk";

const base = process.argv[2];
const response = await fetch(`${base}/api/session-token`, {
  method: "POST",
  headers: { "Content-Type": "application/json" },
  body: JSON.stringify({ context: "sales", metadata: { region: "EU" } }),
});
if (!response.ok) {
  throw new Error(`token endpoint answered ${response.status}: ${await response.text()}`);
}
const { sessionToken, persona } = await response.json();

// The SDK must refuse a token that is not JWT-shaped, or this check would prove nothing.
let refused = false;
try {
  createClient("not-a-jwt");
} catch {
  refused = true;
}
if (!refused) {
  throw new Error("createClient accepted a malformed token");
}

const client = createClient(sessionToken);
console.log(JSON.stringify({ persona, organizationId: client.organizationId }));
