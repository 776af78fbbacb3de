"""Images in chat messages: where they may come from, what they may be, and how they become model input.

An OpenAI chat message's content is a string or a list of parts. Parts of type ``text`` carry text;
parts of type ``image_url`` carry ``{"url": ...}`` where the URL is a ``data:`` URL (base64 PNG, JPEG or
WebP: what Open-AutoGLM sends with every step) or, only for hosts the operator lists in
``allowed_image_hosts``, an ``http(s)`` URL. Local paths and ``file:`` URLs are never read.

Everything here runs on the preprocessing threads, never on the event loop. Each refusal is an
``ImageError`` whose message names the message and part index and, for a limit, the setting.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import urllib.error
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass
from typing import Any

from PIL import Image

from .config import Settings

# What PIL reports for the formats we accept.
FORMATS = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp"}
DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[\w.+-]+=[\w.+-]+)*)(?P<b64>;base64)?,", re.I)
BASE64_CHARS = re.compile(rb"^[A-Za-z0-9+/]*={0,2}$")


class ImageError(ValueError):
    """A request's image is refused: HTTP 400 (or 413 when ``status`` says so), ``param`` names where."""

    def __init__(self, message: str, param: str, status: int = 400) -> None:
        super().__init__(message)
        self.param, self.status = param, status


@dataclass
class ImageRef:
    """An image part found in a request, not yet fetched or decoded."""

    url: str
    where: str  # e.g. "messages[1].content[0]"


def _no_redirects() -> urllib.request.OpenerDirector:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req, fp, code, msg, headers, newurl):
            return None  # a redirect is answered as the error it is: we fetch only the URL the operator allowed

    return urllib.request.build_opener(NoRedirect, urllib.request.ProxyHandler({}))


def load_image_bytes(ref: ImageRef, settings: Settings) -> bytes:
    """The image's encoded bytes, within ``max_image_bytes``, from a data: URL or an allowed remote host."""
    url = ref.url.strip()
    limit = settings.max_image_bytes
    match = DATA_URL.match(url)
    if match:
        if not match.group("b64"):
            raise ImageError(
                f"{ref.where}: the data: URL must be base64-encoded (data:image/png;base64,...).", ref.where
            )
        mime = (match.group("mime") or "").lower()
        if mime and not mime.startswith("image/"):
            raise ImageError(f"{ref.where}: the data: URL holds {mime}, not an image.", ref.where)
        payload = url[match.end() :].encode("ascii", "replace")
        payload = b"".join(payload.split())  # line breaks inside base64 are common and harmless
        if len(payload) * 3 // 4 > limit + 2:  # decoded size, known before decoding
            raise ImageError(
                f"{ref.where}: the image is about {len(payload) * 3 // 4} bytes; this server accepts at most {limit} "
                "bytes per image (setting max_image_bytes).",
                ref.where,
            )
        if not BASE64_CHARS.match(payload):
            raise ImageError(f"{ref.where}: the data: URL is not valid base64.", ref.where)
        try:
            return base64.b64decode(payload + b"=" * (-len(payload) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ImageError(f"{ref.where}: the data: URL is not valid base64.", ref.where) from None
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise ImageError(
            f"{ref.where}: images must be data: URLs (data:image/png;base64,...) or http(s) URLs of an allowed host; "
            f"{scheme or 'a path'}{':' if scheme else ''} is never read.",
            ref.where,
        )
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    if host not in settings.image_hosts:
        raise ImageError(
            f"{ref.where}: remote image URLs are refused unless their host is allowed; {host or 'this URL'} is not "
            "(setting allowed_image_hosts). Send the image inline as a data: URL.",
            ref.where,
        )
    request = urllib.request.Request(url, headers={"User-Agent": "autoglm-server"})  # noqa: S310 (scheme checked)
    try:
        with _no_redirects().open(request, timeout=settings.image_fetch_timeout) as response:
            data = response.read(limit + 1)
    except urllib.error.HTTPError as exc:
        raise ImageError(f"{ref.where}: fetching the image from {host} failed: HTTP {exc.code}.", ref.where) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ImageError(f"{ref.where}: fetching the image from {host} failed: {reason}.", ref.where) from None
    if len(data) > limit:
        raise ImageError(
            f"{ref.where}: the image from {host} is larger than {limit} bytes (setting max_image_bytes).", ref.where
        )
    return data


def decode_image(data: bytes, ref: ImageRef, settings: Settings) -> Image.Image:
    """Decode PNG, JPEG or WebP bytes into an RGB image, refusing other formats and oversized images before
    their pixels are decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=list(FORMATS))
    except Image.UnidentifiedImageError:
        raise ImageError(
            f"{ref.where}: the image is not a PNG, JPEG or WebP file (or it is damaged); send one of those formats.",
            ref.where,
        ) from None
    except (OSError, ValueError, Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageError(f"{ref.where}: the image cannot be read: {exc}.", ref.where) from None
    width, height = image.size
    if width * height > settings.max_image_pixels:
        raise ImageError(
            f"{ref.where}: the image is {width}x{height} = {width * height} pixels; this server accepts at most "
            f"{settings.max_image_pixels} pixels per image (setting max_image_pixels).",
            ref.where,
        )
    try:
        image.load()
        return image.convert("RGB")
    except (OSError, ValueError, SyntaxError) as exc:  # PIL raises SyntaxError for some broken headers
        raise ImageError(f"{ref.where}: the image is damaged and cannot be decoded: {exc}.", ref.where) from None


def collect(messages: list[Any], settings: Settings, vision: bool) -> tuple[list[dict], list[ImageRef]]:
    """Turn request messages into template messages and the images they reference, in order.

    Text parts stay text parts; an image part becomes ``{"type": "image"}`` (the form chat templates of
    vision-language models expect). With ``chat_template_content_format = "string"`` every content is flattened
    to one string, the images' placeholders first, then the texts joined by newlines (vLLM's string format).
    """
    out: list[dict] = []
    refs: list[ImageRef] = []
    for i, message in enumerate(messages):
        content = message.content
        if isinstance(content, str):
            out.append({"role": message.role, "content": content})
            continue
        parts: list[dict] = []
        for j, part in enumerate(content):
            where = f"messages[{i}].content[{j}]"
            if part.type == "text":
                parts.append({"type": "text", "text": part.text})
                continue
            # part.type == "image_url" (the protocol admits nothing else)
            if not vision:
                raise ImageError(
                    f"{where}: this model ({settings.model_name}) has no vision input; it accepts text only. "
                    "Remove the image, or serve a vision-language model.",
                    where,
                )
            if message.role != "user":
                raise ImageError(f"{where}: images are accepted in user messages only (this is {message.role}).", where)
            refs.append(ImageRef(url=part.image_url.url, where=where))
            if len(refs) > settings.max_images_per_request:
                raise ImageError(
                    f"{where}: more than {settings.max_images_per_request} images in one request "
                    "(setting max_images_per_request).",
                    where,
                )
            parts.append({"type": "image"})
        out.append({"role": message.role, "content": parts})
    return out, refs


def flatten(messages: list[dict], placeholder: str) -> list[dict]:
    """vLLM's ``string`` content format: each content one string, image placeholders before the text."""
    flat = []
    for message in messages:
        content = message["content"]
        if not isinstance(content, str):
            images = sum(1 for p in content if p["type"] == "image")
            texts = [p["text"] for p in content if p["type"] == "text"]
            content = placeholder * images + "\n".join(texts)
        flat.append({"role": message["role"], "content": content})
    return flat
