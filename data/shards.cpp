// STUB
#include "data/shards.h"
