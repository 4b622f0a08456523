// The entry point of ../ed25519.js (see build.sh): Ed25519 signing and
// SHA-256 for the web chat where WebCrypto is missing. Browsers offer
// crypto.subtle only in secure contexts (HTTPS, localhost), so a chat
// opened at a plain-HTTP LAN address (http://192.168.1.20:18789) has none.
import * as ed from "@noble/ed25519";
import { sha256, sha512 } from "@noble/hashes/sha2.js";

// The synchronous API needs a SHA-512; the asynchronous one would ask
// crypto.subtle, which is the thing that is missing.
ed.hashes.sha512 = sha512;

globalThis.moltgateEd25519 = Object.freeze({
  // randomSecretKey draws 32 bytes from crypto.getRandomValues, which
  // browsers offer in insecure contexts too.
  randomSecretKey: () => ed.utils.randomSecretKey(),
  getPublicKey: (secretKey) => ed.getPublicKey(secretKey),
  sign: (message, secretKey) => ed.sign(message, secretKey),
  sha256: (bytes) => sha256(bytes),
});
