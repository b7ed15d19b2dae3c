// STUB
#include "data/prepare.h"
