from tests.image.support import base_image, registry

__all__ = ["base_image", "registry"]
