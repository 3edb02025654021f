// The published segments' fast path (segscan.c).
#ifndef VMLOCKD_SEGSCAN_H
#define VMLOCKD_SEGSCAN_H
#include <node_api.h>

/* Numbers per fact in scanFacts' out array (src/journal/segment-scan.ts reads them). */
#define SEGSCAN_STRIDE 19

napi_value segscan_scan_facts(napi_env env, napi_callback_info info);

#endif
