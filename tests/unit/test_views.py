import torch

from adapters.views import clean_view, make_views
from tests.conftest import make_image


def test_same_seed_same_pixels_and_different_seed_different_views():
    image = make_image(1, (200, 150))
    a = make_views(image, 16, 32, seed=7)
    b = make_views(image, 16, 32, seed=7)
    c = make_views(image, 16, 32, seed=8)
    assert a.shape == (16, 3, 32, 32)
    assert torch.equal(a, b)
    assert not torch.equal(a[1:], c[1:])
    # The clean view does not depend on the seed.
    assert torch.equal(a[0], c[0])


def test_clean_view_is_centre_crop_of_shorter_side():
    image = make_image(2, (300, 100))
    view = clean_view(image, 32)
    assert view.shape == (3, 32, 32)
    assert float(view.min()) >= 0.0 and float(view.max()) <= 1.0
    assert torch.equal(make_views(image, 4, 32, seed=0)[0], view)


def test_views_stay_in_pixel_range_for_large_and_tiny_images():
    for size in ((2000, 1500), (5, 3)):
        views = make_views(make_image(3, size) if min(size) > 60 else make_image(3).resize(size),
                           8, 32, seed=0)
        assert views.shape == (8, 3, 32, 32)
        assert float(views.min()) >= 0.0 and float(views.max()) <= 1.0
