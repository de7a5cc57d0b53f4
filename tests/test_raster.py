from __future__ import annotations

import cv2
import numpy as np
import pytest

from facecli import raster
from facecli.facemodel import MIRROR_INDEX, mean_face
from facecli.geometry import camera_matrix, rotation_from_euler_xyz

# Corners with fractional coordinates, listed with a negative signed area (front-facing).
TRIANGLE_PX = np.array([[10.3, 5.7, 1.0], [22.1, 44.9, 1.0], [50.8, 20.2, 1.0]])
SIZE = (64, 56)


def _posed_face(yaw_deg: float = 0.0, distance_mm: float = 600.0) -> np.ndarray:
    rot = rotation_from_euler_xyz(np.radians([0.0, yaw_deg, 0.0]))
    return mean_face().vertices_mm @ rot.T + [0.0, 0.0, distance_mm]


def _patch_mean(image: np.ndarray, point_px: np.ndarray, radius: int = 2) -> float:
    x, y = np.rint(point_px[:2]).astype(int)
    return float(image[y - radius:y + radius + 1, x - radius:x + radius + 1].mean())


def _test_texture(size: int) -> np.ndarray:
    """Red ramps along u, green along v, blue a smooth 2D wave: any swap or flip of u/v shows."""
    u, v = np.meshgrid(np.arange(size), np.arange(size))
    wave = 128 + 100 * np.sin(2 * np.pi * u / 64) * np.cos(2 * np.pi * v / 80)
    return np.dstack([u * 255 / (size - 1), v * 255 / (size - 1), wave]).astype(np.uint8)


def test_single_triangle_covers_what_fill_poly_covers() -> None:
    _, mask = raster.rasterize(TRIANGLE_PX, np.array([[0, 1, 2]]), np.ones((3, 1)), SIZE)
    shift = 8
    filled = np.zeros(SIZE[::-1], np.uint8)
    cv2.fillPoly(filled, [np.rint(TRIANGLE_PX[:, :2] * 2**shift).astype(np.int32)], 1, shift=shift)
    differ = np.argwhere(mask != filled.astype(bool))
    polygon = TRIANGLE_PX[:, :2].astype(np.float32)
    border_px = [abs(cv2.pointPolygonTest(polygon, (float(x), float(y)), True)) for y, x in differ]
    assert mask.sum() > 500
    assert max(border_px, default=0.0) <= 1.0
    # exact: every pixel centre strictly inside is drawn, none strictly outside
    inside = np.array([[cv2.pointPolygonTest(polygon, (float(x), float(y)), True) for x in range(SIZE[0])]
                       for y in range(SIZE[1])])
    assert mask[inside > 1e-3].all() and not mask[inside < -1e-3].any()


def test_attributes_interpolate_barycentrically() -> None:
    values = np.array([[10.0], [20.0], [40.0]])
    attrs = np.hstack([np.eye(3), values])
    image, mask = raster.rasterize(TRIANGLE_PX, np.array([[0, 1, 2]]), attrs, SIZE)
    x, y = 25, 22
    weights = np.linalg.solve(np.vstack([TRIANGLE_PX[:, :2].T, np.ones(3)]), [x, y, 1.0])
    assert mask[y, x]
    assert image[y, x] == pytest.approx(np.append(weights, weights @ values[:, 0]), abs=1e-4)
    # the identity attributes are the barycentric weights themselves, everywhere drawn
    drawn = image[mask][:, :3]
    assert np.allclose(drawn.sum(axis=1), 1.0, atol=1e-5) and drawn.min() > -1e-5
    assert not image[~mask].any()


def test_back_faces_are_culled_unless_asked_not_to() -> None:
    reversed_winding = np.array([[0, 2, 1]])
    _, front = raster.rasterize(TRIANGLE_PX, np.array([[0, 1, 2]]), np.ones((3, 1)), SIZE)
    _, culled = raster.rasterize(TRIANGLE_PX, reversed_winding, np.ones((3, 1)), SIZE)
    _, kept = raster.rasterize(TRIANGLE_PX, reversed_winding, np.ones((3, 1)), SIZE, cull_back=False)
    assert not culled.any()
    assert np.array_equal(kept, front)


def test_project_matches_opencv() -> None:
    face = _posed_face(20.0)
    camera = camera_matrix(720, 528)
    expected, _ = cv2.projectPoints(face, np.zeros(3), np.zeros(3), camera, None)
    projected = raster.project(face, camera)
    assert projected[:, :2] == pytest.approx(expected.reshape(-1, 2))
    assert projected[:, 2] == pytest.approx(face[:, 2])


def test_mean_face_front_triangles_have_negative_area() -> None:
    screen = raster.project(_posed_face(), camera_matrix(512, 512))
    facing = raster.front_facing(screen, mean_face().triangles)
    assert facing.mean() > 0.9


@pytest.mark.parametrize("order", [[0, 1], [1, 0]])
def test_nearer_triangle_wins_whatever_the_order(order: list[int]) -> None:
    near = np.array([[5.0, 5.0, 2.0], [20.0, 50.0, 2.0], [50.0, 10.0, 2.0]])
    far = np.array([[15.0, 2.0, 9.0], [25.0, 45.0, 9.0], [60.0, 30.0, 9.0]])
    vertices = np.vstack([near, far])
    attrs = np.repeat([[1.0], [2.0]], 3, axis=0)
    tris = np.array([[0, 1, 2], [3, 4, 5]])[order]
    image, mask = raster.rasterize(vertices, tris, attrs, SIZE)
    _, near_mask = raster.rasterize(near, np.array([[0, 1, 2]]), np.ones((3, 1)), SIZE)
    _, far_mask = raster.rasterize(far, np.array([[0, 1, 2]]), np.ones((3, 1)), SIZE)
    overlap = near_mask & far_mask
    assert overlap.sum() > 200
    assert (image[overlap, 0] == 1.0).all()
    assert (image[far_mask & ~near_mask, 0] == 2.0).all()
    assert np.array_equal(mask, near_mask | far_mask)


def test_depth_is_tested_per_pixel_for_crossing_triangles() -> None:
    flat = np.array([[0.0, 0.0, 10.0], [0.0, 55.0, 10.0], [63.0, 0.0, 10.0]])
    tilted = np.array([[0.0, 2.0, 8.0], [0.0, 50.0, 8.0], [63.0, 25.0, 18.0]])  # z = 8 + x * 10 / 63
    image, _ = raster.rasterize(np.vstack([flat, tilted]), np.array([[0, 1, 2], [3, 4, 5]]),
                                np.repeat([[1.0], [2.0]], 3, axis=0), SIZE)
    _, flat_mask = raster.rasterize(flat, np.array([[0, 1, 2]]), np.ones((3, 1)), SIZE)
    _, tilted_mask = raster.rasterize(tilted, np.array([[0, 1, 2]]), np.ones((3, 1)), SIZE)
    ys, xs = np.nonzero(flat_mask & tilted_mask)
    tilted_z = 8 + xs * 10 / 63
    clear = np.abs(tilted_z - 10) > 0.2  # away from where the two cross
    assert (tilted_z[clear] < 10).sum() > 100 and (tilted_z[clear] > 10).sum() > 100
    assert np.array_equal(image[ys[clear], xs[clear], 0] == 2.0, tilted_z[clear] < 10)


def test_shaded_mean_face_is_one_centred_blob_with_a_bright_nose() -> None:
    camera = camera_matrix(512, 512)
    face = _posed_face()
    rgb, mask = raster.shade(face, mean_face().triangles, camera, (512, 512))
    count, _ = cv2.connectedComponents(mask.astype(np.uint8))
    ys, xs = np.nonzero(mask)
    assert count == 2  # the background and one face
    assert abs(xs.mean() - 256) < 2 and abs(ys.mean() - 256) < 50
    screen = raster.project(face, camera)
    nose, right_cheek, left_cheek = screen[4], screen[116], screen[MIRROR_INDEX[116]]
    assert _patch_mean(mask, right_cheek) == 1.0 and _patch_mean(mask, left_cheek) == 1.0
    assert _patch_mean(rgb, nose) > _patch_mean(rgb, right_cheek) + 40
    assert _patch_mean(rgb, nose) > _patch_mean(rgb, left_cheek) + 40
    # a light on the image left (-x) brightens the cheek on the image left
    side_lit, _ = raster.shade(face, mean_face().triangles, camera, (512, 512), light_dir=(-1.0, 0.0, 0.0))
    assert _patch_mean(side_lit, right_cheek) > _patch_mean(side_lit, left_cheek) + 40


@pytest.mark.parametrize("yaw_deg", [0.0, 30.0])
def test_nose_tip_is_drawn_where_project_puts_it(yaw_deg: float) -> None:
    camera = camera_matrix(512, 512)
    face = _posed_face(yaw_deg)
    screen = raster.project(face, camera)
    distance, mask = raster.rasterize(screen, mean_face().triangles,
                                      np.linalg.norm(face - face[4], axis=1)[:, None], (512, 512))
    x, y = np.rint(screen[4, :2]).astype(int)
    assert mask[y, x] and distance[y, x, 0] < 1.5  # the surface seen there is the nose tip's


def test_yaw_moves_the_nose_one_way_and_the_face_the_other() -> None:
    camera = camera_matrix(512, 512)
    centroid_x = {}
    for yaw in (0.0, 30.0):
        _, mask = raster.shade(_posed_face(yaw), mean_face().triangles, camera, (512, 512))
        centroid_x[yaw] = np.nonzero(mask)[1].mean()
    nose_x = raster.project(_posed_face(30.0), camera)[4, 0]
    # +30° about y swings the nose, in front of the rotation centre (the rigid points' centroid),
    # to the image left, and the face's far side, behind it, to the right and into view
    assert nose_x < 256 - 10
    assert centroid_x[30.0] > centroid_x[0.0] + 8


def test_frontal_uv_is_an_upright_face_in_the_unit_square() -> None:
    vertices = mean_face().vertices_mm
    uv = raster.frontal_uv(vertices)
    assert uv.shape == (478, 2)
    assert uv.min() >= 0.0 and uv.max() <= 1.0
    assert uv[33, 0] < uv[263, 0]  # the subject's right eye on the left, as in the image
    assert max(uv[33, 1], uv[263, 1]) < min(uv[13, 1], uv[14, 1])  # eyes above the mouth
    assert uv[152, 1] == pytest.approx(uv[:, 1].max())  # the chin lowest
    span_uv, span_mm = np.ptp(uv, axis=0), np.ptp(vertices[:, :2], axis=0)
    assert span_uv[0] / span_uv[1] == pytest.approx(span_mm[0] / span_mm[1])  # not stretched


def _round_trip(yaw_deg: float, uv_unwrap: np.ndarray, with_depth: bool = False):
    """A textured face rendered at ``yaw_deg``, unwrapped again: (original, recovered, mask)."""
    size = 256
    texture = _test_texture(size)
    camera = camera_matrix(512, 512)
    face = _posed_face(yaw_deg, distance_mm=350.0)
    uv = raster.frontal_uv(mean_face().vertices_mm)
    image = raster.render_textured(face, mean_face().triangles, uv, texture, camera, (512, 512))
    screen = raster.project(face, camera)
    depth = screen[:, 2] if with_depth else None
    recovered, mask = raster.unwrap_texture(image, screen, mean_face().triangles, uv_unwrap, size, depth=depth)
    return texture, recovered, mask


def _central_region(size: int) -> np.ndarray:
    region = np.zeros((size, size), bool)
    region[int(0.25 * size):int(0.75 * size), int(0.3 * size):int(0.7 * size)] = True
    return region


def test_render_then_unwrap_recovers_the_texture() -> None:
    uv = raster.frontal_uv(mean_face().vertices_mm)
    texture, recovered, mask = _round_trip(0.0, uv)
    central = _central_region(len(texture))
    assert mask[central].mean() > 0.85  # all but the eye and mouth openings
    error = np.abs(recovered.astype(float) - texture)[central & mask].mean()
    assert error < 4.0
    assert not recovered[~mask].any()


@pytest.mark.parametrize("wrong", ["swapped", "u flipped", "v flipped"])
def test_unwrap_with_a_wrong_layout_does_not_match(wrong: str) -> None:
    uv = raster.frontal_uv(mean_face().vertices_mm)
    uv_wrong = {"swapped": uv[:, ::-1], "u flipped": np.column_stack([1 - uv[:, 0], uv[:, 1]]),
                "v flipped": np.column_stack([uv[:, 0], 1 - uv[:, 1]])}[wrong]
    texture, recovered, mask = _round_trip(0.0, uv_wrong)
    central = _central_region(len(texture)) & mask
    assert np.abs(recovered.astype(float) - texture)[central].mean() > 20.0


def test_depth_masks_the_texels_the_nose_hides() -> None:
    uv = raster.frontal_uv(mean_face().vertices_mm)
    texture, recovered, facing_only = _round_trip(45.0, uv)
    _, _, visible = _round_trip(45.0, uv, with_depth=True)
    error = np.abs(recovered.astype(float) - texture).mean(axis=2)
    hidden = facing_only & ~visible
    assert not (visible & ~facing_only).any()
    assert hidden.sum() > 500
    assert error[visible].mean() < 4.0  # what is kept was seen
    assert error[hidden].mean() > 15.0  # what is dropped was smeared from the nose


def test_unwrap_leaves_out_triangles_facing_away_in_the_image() -> None:
    uv = raster.frontal_uv(mean_face().vertices_mm)
    triangles = mean_face().triangles
    _, _, mask = _round_trip(60.0, uv)
    screen = raster.project(_posed_face(60.0, distance_mm=350.0), camera_matrix(512, 512))
    facing = raster.front_facing(screen, triangles)
    texel_px = np.column_stack([uv * len(mask) - 0.5, np.zeros(len(uv))])
    _, away = raster.rasterize(texel_px, triangles[~facing], np.ones((len(uv), 1)), mask.shape, cull_back=False)
    _, toward = raster.rasterize(texel_px, triangles[facing], np.ones((len(uv), 1)), mask.shape, cull_back=False)
    # away from the edges they share with facing triangles (bilinear seams are fine there)
    away_only = cv2.erode((away & ~toward).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert away_only.sum() > 500
    assert not (mask & away_only).any()
