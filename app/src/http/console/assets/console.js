// The paycode console's one script. It recomputes an order's hash chain
// with this browser's own SHA-256 (WebCrypto), from the bytes the page
// holds, so an auditor need not take the server's word for it. The
// encoding is adapters/src/store/chain.rs's, byte for byte: a domain tag,
// the previous link, then each field (variable-length ones behind their
// length as a big-endian u64). Everything else on the console works
// without this script.
"use strict";
(function () {
  const encoder = new TextEncoder();
  const TAG = encoder.encode("paycode/event-chain/v1\n");
  const GENESIS = "0".repeat(64);

  function hexToBytes(hex) {
    if (hex.length % 2 !== 0 || /[^0-9a-fA-F]/.test(hex)) {
      throw new Error("not hex: " + hex.slice(0, 16));
    }
    const bytes = new Uint8Array(hex.length / 2);
    for (let i = 0; i < bytes.length; i += 1) {
      bytes[i] = parseInt(hex.substr(i * 2, 2), 16);
    }
    return bytes;
  }

  function bytesToHex(bytes) {
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function u64(value) {
    const bytes = new Uint8Array(8);
    new DataView(bytes.buffer).setBigUint64(0, BigInt(value));
    return bytes;
  }

  function u32(value) {
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setUint32(0, Number(value));
    return bytes;
  }

  // The link of one event: lower-case hex SHA-256, as chain.rs computes it.
  async function link(previousHex, stream, version, eventId, eventType, schemaVersion, payloadHex) {
    const streamBytes = encoder.encode(stream);
    const typeBytes = encoder.encode(eventType);
    const data = hexToBytes(payloadHex);
    const parts = [
      TAG,
      hexToBytes(previousHex),
      u64(streamBytes.length), streamBytes,
      u64(version),
      hexToBytes(eventId.replace(/-/g, "")),
      u64(typeBytes.length), typeBytes,
      u32(schemaVersion),
      u64(data.length), data,
    ];
    const whole = new Uint8Array(parts.reduce((n, part) => n + part.length, 0));
    let offset = 0;
    for (const part of parts) {
      whole.set(part, offset);
      offset += part.length;
    }
    return bytesToHex(new Uint8Array(await crypto.subtle.digest("SHA-256", whole)));
  }

  // Checks every row of the event table: its previous link is the hash of
  // the row before (zeros for the first), and its hash is what its bytes
  // give. Reports the first broken link by version.
  async function verify(table, result) {
    const stream = table.dataset.stream;
    let expectedPrevious = GENESIS;
    let broken = null;
    let count = 0;
    for (const row of table.querySelectorAll("tr.event")) {
      const d = row.dataset;
      const cell = row.querySelector("td.check");
      let problem = null;
      if (d.previous !== expectedPrevious) {
        problem = "its previous link is not the hash of the event before it";
      } else {
        const computed = await link(d.previous, stream, d.version, d.eventId, d.type, d.schema, d.payload);
        if (computed !== d.hash) {
          problem = "its bytes hash to " + computed.slice(0, 16) + "…, not the stored link";
        }
      }
      cell.textContent = problem === null ? "✓ holds" : "✗ broken: " + problem;
      row.classList.toggle("broken", problem !== null);
      if (problem !== null && broken === null) {
        broken = { version: d.version, problem: problem };
      }
      expectedPrevious = d.hash;
      count += 1;
    }
    if (broken === null) {
      result.dataset.outcome = "ok";
      result.textContent = "The chain holds: " + count + " events recomputed in this browser; last link " +
        expectedPrevious.slice(0, 16) + "….";
    } else {
      result.dataset.outcome = "broken";
      result.dataset.brokenVersion = broken.version;
      result.textContent = "Broken link at version " + broken.version + ": " + broken.problem + ".";
    }
  }

  window.paycodeChain = { link: link };

  document.addEventListener("DOMContentLoaded", function () {
    const button = document.getElementById("verify");
    const table = document.getElementById("event-table");
    const result = document.getElementById("verify-result");
    if (!button || !table || !result) {
      return;
    }
    button.hidden = false;
    button.addEventListener("click", function () {
      if (!window.crypto || !window.crypto.subtle) {
        result.dataset.outcome = "unavailable";
        result.textContent = "This browser offers no WebCrypto here (it needs HTTPS or localhost): export the evidence and run paycode verify --file.";
        return;
      }
      result.dataset.outcome = "running";
      result.textContent = "Recomputing…";
      verify(table, result).catch(function (error) {
        result.dataset.outcome = "error";
        result.textContent = "Could not verify: " + error.message;
      });
    });
  });
})();
