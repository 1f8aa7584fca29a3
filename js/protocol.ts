// The messages between kernel and page. Settled state lives in traits; streaming
// uses these custom messages so a reply costs O(n) bytes, not O(n²).

export interface SettledMessage {
  id: string;
  role: "user" | "assistant";
  text: string;
  model?: string | null;
  images?: string[]; // sha256 of thumbnails in the `thumbnails` trait
  credits?: number | null;
  tokens?: number | null;
  error?: string | null;
  retryable?: boolean;
  interrupted?: boolean;
  duration?: number | null;
}

export interface Thumbnail {
  data: DataView | ArrayBuffer | Uint8Array;
  mime: string;
  width: number; // size actually sent
  height: number;
}

export type KernelMessage =
  | { type: "turn-start"; id: string; role: "assistant"; model: string }
  | { type: "delta"; id: string; text: string }
  | { type: "turn-end"; id: string; message: Omit<SettledMessage, "text"> & { text?: string } }
  | { type: "turn-error"; id: string; message: string; retryable: boolean }
  | { type: "upload-progress"; id: string; done: number; total: number }
  // The image as it was (or will be) sent, for the viewer; its bytes ride in buffers[0].
  | { type: "image"; sha: string; mime: string; width: number; height: number }
  | { type: "image-missing"; sha: string }
  | { type: "attach-progress"; name: string; received: number; total: number };

export type PageMessage =
  | { type: "submit"; text: string }
  // A file from the computer, in `parts` pieces of one `upload`; this piece rides in buffers[0].
  | { type: "attach"; name: string; mime: string; upload?: string; part?: number; parts?: number }
  | { type: "cancel" }
  | { type: "retry" }
  | { type: "remove-attachment"; sha: string }
  | { type: "view-image"; sha: string } // asks for the full image behind a thumbnail
  | { type: "attach-url"; url: string }; // an image dragged from a web page: the kernel fetches it

export function isKernelMessage(msg: unknown): msg is KernelMessage {
  if (typeof msg !== "object" || msg === null) return false;
  const t = (msg as { type?: unknown }).type;
  return (
    t === "turn-start" || t === "delta" || t === "turn-end" || t === "turn-error" ||
    t === "upload-progress" || t === "image" || t === "image-missing" ||
    t === "attach-progress"
  );
}

/** Binary widget data arrives as a DataView (or a buffer in tests): view it as bytes. */
function asBytes(d: DataView | ArrayBuffer | Uint8Array): Uint8Array {
  if (d instanceof DataView) return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
  return d instanceof ArrayBuffer ? new Uint8Array(d) : d;
}

export function toBlobUrl(thumb: Thumbnail): string {
  return URL.createObjectURL(new Blob([asBytes(thumb.data) as BlobPart], { type: thumb.mime }));
}

/** Settled messages arrive as gzip-compressed JSON in one binary buffer. */
export async function inflateHistory(
  data: DataView | ArrayBuffer | Uint8Array | null | undefined,
): Promise<SettledMessage[]> {
  if (!data || data.byteLength === 0) return [];
  const body = new Response(asBytes(data) as BodyInit).body;
  if (!body) return [];
  const text = await new Response(body.pipeThrough(new DecompressionStream("gzip"))).text();
  return JSON.parse(text) as SettledMessage[];
}
