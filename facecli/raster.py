"""A z-buffered software triangle rasterizer (NumPy) for drawing and texturing the face mesh.

Conventions:

* Pixel (x, y) is sampled at its centre, the integer coordinates, as ``cv2.remap`` and
  ``cv2.fillPoly`` treat it. Screen depth: smaller is nearer.
* A triangle (a, b, c) faces the camera when its screen-space signed area
  (b - a) x (c - a) (x right, y down) is negative: the mean face's triangles are
  counter-clockwise seen from the camera, and y down mirrors that into a negative area.
* Texture coordinates (u, v) lie in [0, 1], v down like image rows; texel i has its centre at
  u = (i + 0.5) / width (OpenGL's convention), so ``uv * size - 0.5`` is in texel px.

Attributes are interpolated affinely in screen space, not perspective-correctly: the face's
triangles are a few pixels across, where the difference is far below a pixel.
"""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

_EMPTY = np.iinfo(np.int64).max
_DEPTH_LEVELS = 2**31 - 1  # depth is quantised into the z-buffer key's upper 31 bits
_BATCH_PIXELS = 1 << 21  # pixels drawn per batch of rows: bounds memory for huge or many overlapping triangles
_EDGE_SLACK = 1e-9  # in barycentric weight
# A texel is visible when it lies at most this share of the mesh's depth range behind the
# z-buffer at its image pixel: the texel and the buffer sample the same surface a fraction of a
# pixel apart, while what hides behind the nose or a cheek lies far deeper.
VISIBILITY_TOLERANCE = 0.05


def signed_area_px2(corners_px: np.ndarray) -> np.ndarray:
    """(T,) twice the signed area of triangles given as (T, 3, 2+) screen corners (x right, y down)."""
    a, b, c = corners_px[:, 0, :2], corners_px[:, 1, :2], corners_px[:, 2, :2]
    return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])


def front_facing(vertices_px: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(T,) bool: the triangles that face the camera in the image (negative signed area)."""
    return signed_area_px2(np.asarray(vertices_px, np.float64)[np.asarray(triangles, np.intp)]) < 0


def project(vertices_mm: np.ndarray, camera: np.ndarray) -> np.ndarray:
    """(N, 3) camera-space points (mm) -> (N, 3) pixel x, y and depth z (mm)."""
    points = np.asarray(vertices_mm, np.float64)
    image = points @ np.asarray(camera, np.float64).T
    return np.column_stack([image[:, :2] / image[:, 2:], points[:, 2]])


def _planes(corners: np.ndarray, area_px2: np.ndarray) -> np.ndarray:
    """(T, 4, 3): per triangle, rows (wa, wb, wc, z) as coefficients of (x, y, 1).

    wa, wb and wc are the barycentric weights of corners a, b and c.
    """
    def edge(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        # (v - u) x (p - u) = -(vy - uy) px + (vx - ux) py + (vy - uy) ux - (vx - ux) uy
        dx, dy = v[:, 0] - u[:, 0], v[:, 1] - u[:, 1]
        return np.stack([-dy, dx, dy * u[:, 0] - dx * u[:, 1]], axis=1) / area_px2[:, None]

    a, b, c = corners[:, 0], corners[:, 1], corners[:, 2]
    wa, wb, wc = edge(b, c), edge(c, a), edge(a, b)
    z = wa * a[:, 2, None] + wb * b[:, 2, None] + wc * c[:, 2, None]
    return np.stack([wa, wb, wc, z], axis=1)


def _row_spans(planes: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, ...]:
    """The pixels the triangles cover, as row spans: triangle, y, first x and last x (all (R,)).

    ``lo`` and ``hi`` (T, 2) are the triangles' pixel boxes, already clipped to the image.
    """
    heights = hi[:, 1] - lo[:, 1] + 1
    tri = np.repeat(np.arange(len(planes)), heights)
    y = np.arange(heights.sum()) - np.repeat(np.cumsum(heights) - heights - lo[:, 1], heights)
    coef = planes[tri, :3]
    # each weight is slope * x + offset along the row and must stay >= 0; the slack keeps pixels
    # exactly on a shared edge from falling through both triangles
    slope, offset = coef[:, :, 0], coef[:, :, 1] * y[:, None] + coef[:, :, 2] + _EDGE_SLACK
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = -offset / slope
    # a weight constant along a row belongs to a horizontal edge, which the box's rows already obey
    first = np.maximum(np.ceil(np.where(slope > 0, bound, -np.inf).max(axis=1)), lo[tri, 0])
    last = np.minimum(np.floor(np.where(slope < 0, bound, np.inf).min(axis=1)), hi[tri, 0])
    open_row = last >= first
    return tri[open_row], y[open_row], first[open_row].astype(np.int64), last[open_row].astype(np.int64)


def _batches(counts: np.ndarray) -> Iterator[slice]:
    """Consecutive runs of rows that hold about _BATCH_PIXELS pixels together."""
    ends = np.cumsum(counts)
    start = 0
    while start < len(counts):
        base = ends[start - 1] if start else 0
        stop = max(int(np.searchsorted(ends, base + _BATCH_PIXELS, side="right")), start + 1)
        yield slice(start, stop)
        start = stop


def _splat(buffer: np.ndarray, width: int, depth_planes: np.ndarray, tri: np.ndarray, y: np.ndarray,
           first: np.ndarray, last: np.ndarray, depth_min: float, depth_scale: float) -> None:
    """Keeps the nearest (depth, triangle) key per pixel of the row spans in ``buffer``."""
    counts = last - first + 1
    starts = np.cumsum(counts) - counts
    x = np.arange(counts.sum()) - np.repeat(starts - first, counts)
    plane = depth_planes[tri]
    z = np.repeat(plane[:, 0], counts) * x + np.repeat(plane[:, 1] * y + plane[:, 2], counts)
    level = np.clip((z - depth_min) * depth_scale, 0, _DEPTH_LEVELS).astype(np.int64)
    key = (level << 32) | np.repeat(tri, counts)
    np.minimum.at(buffer, np.repeat(y * width, counts) + x, key)


def rasterize(vertices_px: np.ndarray, triangles: np.ndarray, attributes: np.ndarray,
              size: tuple[int, int], cull_back: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Draws triangles with a z-buffer and interpolates per-vertex attributes over them.

    ``vertices_px`` (N, 3): pixel x, y and depth (smaller is nearer); ``triangles`` (T, 3)
    vertex indices; ``attributes`` (N, K); ``size`` (width, height). With ``cull_back``,
    triangles with a non-negative signed area (facing away, see the module notes) are skipped.
    A pixel covered twice shows the nearer triangle; on a tie (an edge two triangles share) the
    one listed first. Returns the attribute image (H, W, K) float32 (zero where nothing is drawn) and the mask
    (H, W) bool.
    """
    width, height = size
    verts = np.asarray(vertices_px, np.float64)
    attrs = np.asarray(attributes, np.float64)
    tris = np.asarray(triangles, np.intp).reshape(-1, 3)
    corners = verts[tris]
    area = signed_area_px2(corners)
    lo = np.maximum(np.ceil(corners[:, :, :2].min(axis=1)), 0)
    hi = np.minimum(np.floor(corners[:, :, :2].max(axis=1)), [width - 1, height - 1])
    drawn = (area < 0 if cull_back else area != 0) & np.isfinite(corners).all(axis=(1, 2)) & (hi >= lo).all(axis=1)
    ids = np.flatnonzero(drawn)
    planes = _planes(corners[ids], area[ids])

    buffer = np.full(width * height, _EMPTY, np.int64)
    if len(ids):
        tri, y, first, last = _row_spans(planes, lo[ids].astype(np.int64), hi[ids].astype(np.int64))
        depths = corners[ids, :, 2]
        depth_min, depth_range = float(depths.min()), float(np.ptp(depths))
        depth_scale = _DEPTH_LEVELS / depth_range if depth_range > 0 else 0.0
        for rows in _batches(last - first + 1):
            _splat(buffer, width, planes[:, 3], tri[rows], y[rows], first[rows], last[rows], depth_min, depth_scale)

    pixel = np.flatnonzero(buffer != _EMPTY)
    winner = (buffer[pixel] & 0xFFFFFFFF).astype(np.intp)
    row, col = np.divmod(pixel, width)
    # each attribute is a plane over its triangle too: (T, 3, K) coefficients of (x, y, 1)
    attr_planes = np.einsum("twc,twk->tck", planes[:, :3], attrs[tris[ids]])
    point = np.column_stack([col, row, np.ones_like(col)]).astype(np.float64)
    values = np.einsum("pck,pc->pk", attr_planes[winner], point)
    image = np.zeros((height * width, attrs.shape[1]), np.float32)
    image[pixel] = values
    mask = np.zeros(height * width, bool)
    mask[pixel] = True
    return image.reshape(height, width, -1), mask.reshape(height, width)


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(N, 3) unit normals, each the area-weighted mean of its triangles' outward normals.

    Vertices in no triangle (the iris points) get a zero normal.
    """
    verts = np.asarray(vertices, np.float64)
    tris = np.asarray(triangles, np.intp)
    a, b, c = verts[tris[:, 0]], verts[tris[:, 1]], verts[tris[:, 2]]
    face = np.cross(b - a, c - a)  # length is twice the area: the weighting comes for free
    normals = np.zeros_like(verts)
    for corner in range(3):
        np.add.at(normals, tris[:, corner], face)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return np.divide(normals, length, out=np.zeros_like(normals), where=length > 0)


def shade(vertices_mm_camera: np.ndarray, triangles: np.ndarray, camera: np.ndarray, size: tuple[int, int],
          light_dir: tuple[float, float, float] = (0.0, 0.0, -1.0),
          colour: tuple[int, int, int] = (200, 200, 200), ambient: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """The mesh in flat grey clay: Lambert plus ambient light with smooth per-vertex normals.

    ``light_dir`` points from the surface towards the light in camera axes; the default is a
    light at the camera. Returns RGB (H, W, 3) uint8 (black where nothing is drawn) and the mask.
    """
    screen = project(vertices_mm_camera, camera)
    normal_image, mask = rasterize(screen, triangles, vertex_normals(vertices_mm_camera, triangles), size)
    normals = normal_image[mask].astype(np.float64)
    # interpolation shortens the normals between vertices; renormalise before lighting
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = np.divide(normals, length, out=np.zeros_like(normals), where=length > 0)
    light = np.asarray(light_dir, np.float64)
    lambert = np.clip(normals @ (light / np.linalg.norm(light)), 0.0, 1.0)
    intensity = ambient + (1.0 - ambient) * lambert
    rgb = np.zeros((*mask.shape, 3), np.uint8)
    rgb[mask] = np.clip(np.rint(intensity[:, None] * np.asarray(colour, np.float64)), 0, 255)
    return rgb, mask


def _texel_px(uv: np.ndarray, width: int, height: int) -> np.ndarray:
    """(N, 2) uv in [0, 1] -> texel px (OpenGL's centres, see the module notes)."""
    return np.asarray(uv, np.float64) * [width, height] - 0.5


def render_textured(vertices_mm_camera: np.ndarray, triangles: np.ndarray, uv: np.ndarray,
                    texture_rgb: np.ndarray, camera: np.ndarray, size: tuple[int, int],
                    background: np.ndarray | None = None) -> np.ndarray:
    """The mesh with a texture (bilinear), over ``background`` (H, W, 3) or black: RGB (H, W, 3) uint8."""
    width, height = size
    texel, mask = rasterize(project(vertices_mm_camera, camera), triangles,
                            _texel_px(uv, texture_rgb.shape[1], texture_rgb.shape[0]), size)
    sampled = cv2.remap(texture_rgb, texel[..., 0], texel[..., 1], cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE)
    out = np.zeros((height, width, 3), np.uint8) if background is None else background.copy()
    out[mask] = sampled[mask]
    return out


def frontal_uv(vertices_mm: np.ndarray, margin: float = 0.05) -> np.ndarray:
    """(N, 2) uv in [0, 1]: the points' orthographic front view (x, y), one scale for both axes.

    The layout is centred with ``margin`` on the longer side; v runs down like image rows, so a
    texture drawn in it looks like an upright face. Meant for ``mean_face().vertices_mm``.
    """
    xy = np.asarray(vertices_mm, np.float64)[:, :2]
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    scale = (1.0 - 2.0 * margin) / float((hi - lo).max())
    return 0.5 + (xy - (lo + hi) / 2) * scale


def unwrap_texture(image_rgb: np.ndarray, landmarks_px: np.ndarray, triangles: np.ndarray, uv: np.ndarray,
                   size: int = 512, depth: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The face's texture in the ``uv`` layout, sampled from an image: (size, size, 3) uint8 and its mask.

    ``landmarks_px`` (N, 2+) are the mesh vertices in the image. Triangles facing away in the
    image are left out, so the hidden side is not smeared over the texture. With ``depth`` (N,)
    per vertex (camera-space z in mm, say; smaller is nearer), texels hidden behind nearer
    parts of the face (the far cheek behind the nose) are masked out too, by a z-buffer.
    """
    height, width = image_rgb.shape[:2]
    points = np.asarray(landmarks_px, np.float64)[:, :2]
    tris = np.asarray(triangles, np.intp)[front_facing(points, triangles)]
    z = np.zeros(len(points)) if depth is None else np.asarray(depth, np.float64)
    attributes = np.column_stack([points, z])
    # nearest wins where the layout folds over itself (the edges of the face's sides)
    uv_screen = np.column_stack([_texel_px(uv, size, size), z])
    source, mask = rasterize(uv_screen, tris, attributes, (size, size), cull_back=False)
    map_x, map_y = source[..., 0], source[..., 1]
    mask &= (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)
    if depth is not None:
        mask &= _visible(np.column_stack([points, z]), tris, source, (width, height))
    texture = cv2.remap(image_rgb, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    texture[~mask] = 0
    return texture, mask


def _visible(vertices_px: np.ndarray, triangles: np.ndarray, source: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(size, size) bool: texels whose image point (x, y, depth in ``source``) the z-buffer shows."""
    width, height = size
    nearest, covered = rasterize(vertices_px, triangles, vertices_px[:, 2:], size)
    col = np.clip(np.rint(source[..., 0]), 0, width - 1).astype(np.intp)
    row = np.clip(np.rint(source[..., 1]), 0, height - 1).astype(np.intp)
    tolerance = VISIBILITY_TOLERANCE * float(np.ptp(vertices_px[:, 2]))
    return covered[row, col] & (source[..., 2] <= nearest[row, col, 0] + tolerance)
