"""First start: with no pool at all, load the demo pool and its scheme."""
from __future__ import annotations

from sqlalchemy import select

from core.catalog import SAMPLE_CATALOG
from core.config import SCHEMES_DIR
from core.db import Database
from core.models import Pool

DEMO_SCHEME = SCHEMES_DIR / "demo.yaml"


def ensure_demo(db: Database) -> bool:
    """Load the demo scheme (and the sample DRG catalogue it needs) into an empty database."""
    with db.session() as s:
        if s.scalar(select(Pool.id).limit(1)) is not None:
            return False
    from core.catalog import import_catalog
    from core.scheme import load_scheme, store_scheme

    with db.session() as s:
        import_catalog(s, SAMPLE_CATALOG)
        store_scheme(s, load_scheme(DEMO_SCHEME))
    return True
