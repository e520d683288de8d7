// The seed route's base64 decoding in workerd: Uint8Array.fromBase64 and atob.
import { base64Cases, runtimeDecoders } from "./testing/base64-cases.ts";

base64Cases(runtimeDecoders());
