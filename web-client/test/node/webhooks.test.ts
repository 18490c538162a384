// A real webhook delivery, checked by an implementation of Standard
// Webhooks that is not usersd's: the standardwebhooks package. The
// receiver listens on 127.0.0.1, which usersd reaches only because
// scripts/test.sh starts it with WEBHOOK_ALLOW_PRIVATE=true. The webhook
// is created and deleted over REST with a token that has webhooks:admin
// (and nothing else); the user is created with the admin token.

import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";

import { Webhook, WebhookVerificationError } from "standardwebhooks";

import { createUserClient } from "../../src/index.js";
import { adminToken, uniqueEmail, usersdUrl, webhooksToken } from "../support.js";

interface Delivery {
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** The JSON of a delivery: the event in its REST shape. */
interface EventJson {
  id: string;
  type: string;
  user_id: string;
  user?: { id: string; email: string; full_name: string };
  occurred_at: string;
}

const rest = (method: string, path: string, body?: unknown) =>
  fetch(`${usersdUrl}${path}`, {
    method,
    headers: { Authorization: `Bearer ${webhooksToken}`, "Content-Type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });

describe("a webhook delivery", () => {
  // The webhook sees every user the other tests create meanwhile: each
  // delivery is kept, and a test waits for the one about its user.
  const deliveries: Delivery[] = [];
  let arrived = () => {};
  const receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      deliveries.push({ headers: req.headers, body: Buffer.concat(chunks) });
      arrived();
      res.writeHead(204).end();
    });
  });
  let hookUrl = "";
  let webhookId = "";

  before(async () => {
    receiver.listen(0, "127.0.0.1");
    await once(receiver, "listening");
    hookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
  });
  after(async () => {
    if (webhookId !== "") await rest("DELETE", `/webhooks/${webhookId}`);
    receiver.closeAllConnections();
    receiver.close();
  });

  /** The delivery whose event is about userId, within 20 s (deliveries are queued every second). */
  async function deliveryFor(userId: string): Promise<Delivery> {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const d = deliveries.find((x) => (JSON.parse(x.body.toString("utf8")) as EventJson).user_id === userId);
      if (d !== undefined) return d;
      const left = deadline - Date.now();
      assert.ok(left > 0, `no delivery about user ${userId} within 20 s (${deliveries.length} others arrived)`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        arrived = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }

  it("is signed so that standardwebhooks verifies it, and not a tampered body", async () => {
    const created = await rest("POST", "/webhooks", { url: hookUrl, types: ["created"] });
    assert.equal(created.status, 201, await created.clone().text());
    const { webhook, secret } = (await created.json()) as { webhook: { id: string; url: string; types: string[] }; secret: string };
    webhookId = webhook.id;
    assert.equal(webhook.url, hookUrl);
    assert.deepEqual(webhook.types, ["created"]);
    assert.match(secret, /^whsec_[A-Za-z0-9+/]+=*$/);

    const api = createUserClient(usersdUrl, { token: () => adminToken });
    const { user } = await api.createUser({ email: uniqueEmail("hooked"), fullName: "Hooked User" });
    assert.ok(user);

    const { headers, body } = await deliveryFor(user.id);
    assert.equal(headers["content-type"], "application/json");
    const signed = {
      "webhook-id": String(headers["webhook-id"]),
      "webhook-timestamp": String(headers["webhook-timestamp"]),
      "webhook-signature": String(headers["webhook-signature"]),
    };
    assert.match(signed["webhook-signature"], /^v1,[A-Za-z0-9+/]+=*$/);

    const hook = new Webhook(secret);
    const event = hook.verify(body, signed) as EventJson;
    assert.equal(event.type, "created");
    assert.equal(event.user_id, user.id);
    assert.equal(event.id, signed["webhook-id"], "the event id is the delivery's id, to de-duplicate by");
    assert.deepEqual([event.user?.id, event.user?.email, event.user?.full_name], [user.id, user.email, "Hooked User"]);

    const tampered = Buffer.from(body.toString("utf8").replace("Hooked User", "Hacked User"));
    assert.notDeepEqual(tampered, body);
    assert.throws(() => hook.verify(tampered, signed), WebhookVerificationError);
    assert.throws(() => new Webhook(`whsec_${Buffer.alloc(32, 7).toString("base64")}`).verify(body, signed), WebhookVerificationError, "another secret");

    const deleted = await rest("DELETE", `/webhooks/${webhookId}`);
    assert.equal(deleted.status, 204);
    webhookId = "";
    const listed = (await (await rest("GET", "/webhooks")).json()) as { webhooks: Array<{ id: string }> };
    assert.ok(!listed.webhooks.some((w) => w.id === webhook.id), "the webhook is gone");
  });
});
