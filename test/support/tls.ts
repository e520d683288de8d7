/** Test PKI: a CA made inside the test and the server certificates it signs (valid, expired, for another host), as PEM. */
import { generateKeyPairSync } from "node:crypto";
import forge from "node-forge";

const DAY = 86_400_000;

export interface TestCa {
  readonly certPem: string;
  readonly name: string;
  readonly cert: forge.pki.Certificate;
  readonly key: forge.pki.rsa.PrivateKey;
}

export interface IssuedCert {
  readonly certPem: string;
  readonly keyPem: string;
  /** Hex serial number, as tls's getPeerCertificate() reports it (upper case). */
  readonly serial: string;
}

let serial = 1;

/** RSA keys from Node's crypto (fast), handed to forge as PEM: forge's own generation is slow JS. */
function rsaKeys(): { pub: forge.pki.rsa.PublicKey; priv: forge.pki.rsa.PrivateKey; pem: string } {
  const { publicKey, privateKey } = generateKeyPairSync("rsa", {
    modulusLength: 2048,
    publicKeyEncoding: { type: "spki", format: "pem" },
    privateKeyEncoding: { type: "pkcs8", format: "pem" },
  });
  return {
    pub: forge.pki.publicKeyFromPem(publicKey) as forge.pki.rsa.PublicKey,
    priv: forge.pki.privateKeyFromPem(privateKey) as forge.pki.rsa.PrivateKey,
    pem: privateKey,
  };
}

function nextSerial(): string {
  return (serial++).toString(16).padStart(2, "0").toUpperCase();
}

export function createCa(name = "photo-embed test CA"): TestCa {
  const keys = rsaKeys();
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.pub;
  cert.serialNumber = nextSerial();
  cert.validity.notBefore = new Date(Date.now() - DAY);
  cert.validity.notAfter = new Date(Date.now() + 30 * DAY);
  const attrs = [{ name: "commonName", value: name }];
  cert.setSubject(attrs);
  cert.setIssuer(attrs);
  cert.setExtensions([
    { name: "basicConstraints", cA: true, critical: true },
    { name: "keyUsage", keyCertSign: true, cRLSign: true, critical: true },
    { name: "subjectKeyIdentifier" },
  ]);
  cert.sign(keys.priv, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), name, cert, key: keys.priv };
}

export interface IssueOptions {
  /** DNS names and IP addresses the certificate is for (default localhost and 127.0.0.1). */
  readonly hosts?: readonly string[];
  readonly notBefore?: Date;
  readonly notAfter?: Date;
}

/** A server certificate signed by `ca`, with its private key. */
export function issueServerCert(ca: TestCa, opts: IssueOptions = {}): IssuedCert {
  const keys = rsaKeys();
  const hosts = opts.hosts ?? ["localhost", "127.0.0.1"];
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.pub;
  cert.serialNumber = nextSerial();
  cert.validity.notBefore = opts.notBefore ?? new Date(Date.now() - DAY);
  cert.validity.notAfter = opts.notAfter ?? new Date(Date.now() + 7 * DAY);
  cert.setSubject([{ name: "commonName", value: hosts[0] ?? "localhost" }]);
  cert.setIssuer(ca.cert.subject.attributes);
  cert.setExtensions([
    { name: "basicConstraints", cA: false },
    { name: "keyUsage", digitalSignature: true, keyEncipherment: true },
    { name: "extKeyUsage", serverAuth: true },
    {
      name: "subjectAltName",
      altNames: hosts.map((h) =>
        /^[\d.]+$|:/.test(h) ? { type: 7, ip: h } : { type: 2, value: h },
      ),
    },
  ]);
  cert.sign(ca.key, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: keys.pem, serial: cert.serialNumber };
}
