// STUB: `reformer prepare` (helper A fills this in).
#pragma once
