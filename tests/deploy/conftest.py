from tests.image.support import registry

__all__ = ["registry"]
