//! vpath-import (being written)
