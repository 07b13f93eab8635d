// `thumbnailer`: an Easel endpoint plugin in JavaScript.
//
//   POST /v1/x/thumbnailer/thumb?size=128   (body: a PNG, JPEG or WebP image)
//   -> 200 image/png, the image fitted into a size x size square (transparent padding)
//   GET /v1/x/thumbnailer/headers -> the request header names the plugin saw
//
// The pixels never enter JavaScript: decode, resize and encode run in the host through the
// `easel:plugin/images` resource handles. Requests arrive through StarlingMonkey's fetch
// event (the component exports `wasi:http/incoming-handler`).

import { Image } from 'easel:plugin/images@0.1.0';
import { write as log } from 'easel:plugin/log@0.1.0';

function json(status, code, message) {
  return new Response(JSON.stringify({ error: { code, message } }), {
    status,
    headers: { 'content-type': 'application/json' },
  });
}

async function handle(request) {
  const url = new URL(request.url);
  if (url.pathname === '/headers') {
    // What the plugin was shown of the request (the host strips credentials).
    const names = [...request.headers.keys()].sort();
    return new Response(JSON.stringify({ method: request.method, headers: names }), {
      headers: { 'content-type': 'application/json' },
    });
  }
  if (url.pathname !== '/thumb') {
    return json(404, 'not_found', `no route ${url.pathname}; POST /thumb?size=N`);
  }
  if (request.method !== 'POST') {
    return json(405, 'method_not_allowed', 'POST an image to /thumb');
  }
  const size = Number(url.searchParams.get('size') ?? '128');
  if (!Number.isInteger(size) || size < 16 || size > 1024) {
    return json(400, 'invalid_argument', 'size must be an integer in 16..=1024');
  }
  const bytes = new Uint8Array(await request.arrayBuffer());
  let image;
  try {
    image = Image.decode(bytes);
  } catch (e) {
    const p = e.payload ?? {};
    return json(400, p.code ?? 'decode_error', p.message ?? String(e));
  }
  const info = image.info();
  const png = image.resize(size, size, 'contain', undefined).encode('png');
  try {
    log('info', `thumbnail ${info.width}x${info.height} -> ${size}x${size}`);
  } catch (_) {
    // No log capability: thumbnails still work.
  }
  return new Response(png, {
    status: 200,
    headers: {
      'content-type': 'image/png',
      'x-source-size': `${info.width}x${info.height}`,
    },
  });
}

addEventListener('fetch', (event) => event.respondWith(handle(event.request)));
