/*
 * fakenvml: a fake libnvidia-ml.so.1 for gpucensus's tests.
 *
 * It exports the NVML entry points the nvml backend calls, with the real ABI (nvml.h struct layouts,
 * versioned structs, return codes, nvmlErrorString), so the real pynvml binding runs unmodified against it.
 * What it reports comes from a profile file named by the environment variable FAKENVML_PROFILE, read at
 * nvmlInit. Profile format, one `key=value` a line, `#` starts a comment, later lines win:
 *
 *   count=16                          number of GPUs (nvmlDeviceGetCount_v2)
 *   driver_version=550.54.15          nvmlSystemGetDriverVersion
 *   nvml_version=12.550.54.15         nvmlSystemGetNVMLVersion
 *   fail.<entry point>=<code>         node-level: that entry point returns <code> (e.g. fail.nvmlInitWithFlags=
 *                                     DRIVER_NOT_LOADED); <code> is a name with or without NVML_ERROR_, or a number
 *   gpu.<N|*>.<field>=<value>         per GPU (`*` = every GPU), fields:
 *       uuid serial name bus_id board_part_number vbios_version           strings
 *       pci_device_id pci_subsystem_id                                    32-bit, as NVML reports them
 *       memory_total memory_reserved                                      bytes
 *       architecture                                                      nvmlDeviceArchitecture_t number
 *       cc                                                                compute capability "major.minor"
 *       cores sm_count max_sm_clock max_mem_clock bus_width               numbers (bus_width: memory bus
 *                                                                         width in bits; 0 = NOT_SUPPORTED)
 *       mig mig_pending                                                   unsupported | disabled | enabled
 *       gi_profile.<id>=<slices>,<max instances>,<SMs>,<memory MiB>,<name>   a GPU instance profile
 *       gi=<profile id>                                                   append one GPU instance
 *       fail.<entry point|*>=<code>                                       that entry point (or every one) on
 *                                                                         this GPU returns <code>
 *
 * String values may contain \xNN escapes. Every problem the fake sees (bad profile line, process exiting
 * while NVML is still initialised) is reported on stderr as a line starting "fakenvml:". An entry point is
 * made *absent* (so callers get FUNCTION_NOT_FOUND from dlsym) by building the library with a linker version
 * script that hides it.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int nvmlReturn_t;

enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_UNINITIALIZED = 1,
    NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3,
    NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25,
    NVML_ERROR_UNKNOWN = 999,
};

static const struct {
    int code;
    const char *name;
    const char *text;
} CODES[] = {
    {0, "SUCCESS", "Success"},
    {1, "UNINITIALIZED", "Uninitialized"},
    {2, "INVALID_ARGUMENT", "Invalid Argument"},
    {3, "NOT_SUPPORTED", "Not Supported"},
    {4, "NO_PERMISSION", "Insufficient Permissions"},
    {5, "ALREADY_INITIALIZED", "Already Initialized"},
    {6, "NOT_FOUND", "Not Found"},
    {7, "INSUFFICIENT_SIZE", "Insufficient Size"},
    {8, "INSUFFICIENT_POWER", "Insufficient External Power"},
    {9, "DRIVER_NOT_LOADED", "Driver Not Loaded"},
    {10, "TIMEOUT", "Timeout"},
    {11, "IRQ_ISSUE", "Interrupt Request Issue"},
    {12, "LIBRARY_NOT_FOUND", "NVML Shared Library Not Found"},
    {13, "FUNCTION_NOT_FOUND", "Function Not Found"},
    {14, "CORRUPTED_INFOROM", "Corrupted infoROM"},
    {15, "GPU_IS_LOST", "GPU is lost"},
    {16, "RESET_REQUIRED", "GPU requires restart"},
    {17, "OPERATING_SYSTEM", "The operating system has blocked the request."},
    {18, "LIB_RM_VERSION_MISMATCH", "RM has detected an NVML/RM version mismatch."},
    {19, "IN_USE", "In use by another client"},
    {20, "MEMORY", "Insufficient Memory"},
    {21, "NO_DATA", "No data"},
    {25, "ARGUMENT_VERSION_MISMATCH", "Argument version mismatch"},
    {999, "UNKNOWN", "Unknown Error"},
};
#define NCODES (sizeof CODES / sizeof CODES[0])

/* nvml.h structures, field for field. */
typedef struct {
    char busIdLegacy[16];
    unsigned int domain, bus, device, pciDeviceId, pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;

typedef struct {
    unsigned long long total, free, used;
} nvmlMemory_t;

typedef struct {
    unsigned int version;
    unsigned long long total, reserved, free, used;
} nvmlMemory_v2_t;

typedef struct {
    unsigned int multiprocessorCount, sharedCopyEngineCount, sharedDecoderCount, sharedEncoderCount,
        sharedJpegCount, sharedOfaCount, gpuInstanceSliceCount, computeInstanceSliceCount;
    unsigned long long memorySizeMB;
} nvmlDeviceAttributes_t;

typedef struct {
    unsigned int version, id, isP2pSupported, sliceCount, instanceCount, multiprocessorCount,
        copyEngineCount, decoderCount, encoderCount, jpegCount, ofaCount;
    unsigned long long memorySizeMB;
    char name[96];
} nvmlGpuInstanceProfileInfo_v2_t;

#define NVML_STRUCT_VERSION(type, ver) ((unsigned int)(sizeof(type) | ((ver) << 24U)))

#define MAX_GPUS 64
#define MAX_FAILS 32
#define MAX_GI_PROFILES 32
#define MAX_GIS 16
#define STR 128

struct fail {
    char fn[64];
    int code;
};

struct gi_profile {
    int defined;
    unsigned int slices, instance_count, sm_count;
    unsigned long long memory_mb;
    char name[96];
};

struct gpu;
struct gpu_instance {
    struct gpu *gpu;
    unsigned int id, profile_id;
};

enum { MIG_UNSUPPORTED = -1, MIG_DISABLED = 0, MIG_ENABLED = 1 };

struct gpu {
    char uuid[STR], serial[STR], name[STR], bus_id[STR], part[STR], vbios[STR];
    unsigned int pci_device_id, pci_subsystem_id, architecture, cores, sm_count, max_clock[4], bus_width;
    int cc_major, cc_minor, mig, mig_pending;
    unsigned long long memory_total, memory_reserved;
    struct gi_profile gi_profiles[MAX_GI_PROFILES];
    struct gpu_instance gis[MAX_GIS];
    int n_gis;
    struct fail fails[MAX_FAILS];
    int n_fails;
};

static struct {
    int initialized;
    unsigned int count;
    char driver_version[STR], nvml_version[STR];
    struct fail fails[MAX_FAILS];
    int n_fails;
    struct gpu gpus[MAX_GPUS];
} S;

/* ---- profile parsing ---- */

static int parse_code(const char *s, int *out) {
    char *end;
    long n = strtol(s, &end, 0);
    if (*s && !*end) {
        *out = (int)n;
        return 0;
    }
    if (strncmp(s, "NVML_ERROR_", 11) == 0) s += 11;
    for (size_t i = 0; i < NCODES; i++)
        if (strcmp(CODES[i].name, s) == 0) {
            *out = CODES[i].code;
            return 0;
        }
    return -1;
}

static int add_fail(struct fail *fails, int *n, const char *fn, const char *value) {
    int code;
    if (*n >= MAX_FAILS || strlen(fn) >= sizeof fails[0].fn || parse_code(value, &code)) return -1;
    strcpy(fails[*n].fn, fn);
    fails[*n].code = code;
    (*n)++;
    return 0;
}

static int set_str(char *dst, const char *value) {
    size_t o = 0;
    for (const char *p = value; *p; p++) {
        if (o + 1 >= STR) return -1;
        if (p[0] == '\\' && p[1] == 'x' && isxdigit((unsigned char)p[2]) && isxdigit((unsigned char)p[3])) {
            char hex[3] = {p[2], p[3], 0};
            dst[o++] = (char)strtol(hex, NULL, 16);
            p += 3;
        } else {
            dst[o++] = *p;
        }
    }
    dst[o] = 0;
    return 0;
}

static int set_u64(unsigned long long *dst, const char *value) {
    char *end;
    *dst = strtoull(value, &end, 0);
    return (*value && !*end) ? 0 : -1;
}

static int set_uint(unsigned int *dst, const char *value) {
    unsigned long long v;
    if (set_u64(&v, value) || v > 0xffffffffULL) return -1;
    *dst = (unsigned int)v;
    return 0;
}

static int set_mig(int *dst, const char *value) {
    if (strcmp(value, "unsupported") == 0) *dst = MIG_UNSUPPORTED;
    else if (strcmp(value, "disabled") == 0) *dst = MIG_DISABLED;
    else if (strcmp(value, "enabled") == 0) *dst = MIG_ENABLED;
    else return -1;
    return 0;
}

static int set_gi_profile(struct gpu *g, const char *id_text, const char *value) {
    unsigned int id;
    struct gi_profile p = {1, 0, 0, 0, 0, ""};
    int consumed = 0;
    if (set_uint(&id, id_text) || id >= MAX_GI_PROFILES) return -1;
    if (sscanf(value, "%u,%u,%u,%llu,%n", &p.slices, &p.instance_count, &p.sm_count, &p.memory_mb, &consumed) < 4 ||
        consumed == 0 || strlen(value + consumed) >= sizeof p.name)
        return -1;
    strcpy(p.name, value + consumed);
    g->gi_profiles[id] = p;
    return 0;
}

static int add_gi(struct gpu *g, const char *value) {
    unsigned int profile;
    if (g->n_gis >= MAX_GIS || set_uint(&profile, value)) return -1;
    g->gis[g->n_gis] = (struct gpu_instance){g, (unsigned int)g->n_gis + 1, profile};
    g->n_gis++;
    return 0;
}

static int set_gpu_field(struct gpu *g, const char *field, const char *value) {
    if (strncmp(field, "fail.", 5) == 0) return add_fail(g->fails, &g->n_fails, field + 5, value);
    if (strncmp(field, "gi_profile.", 11) == 0) return set_gi_profile(g, field + 11, value);
    if (strcmp(field, "gi") == 0) return add_gi(g, value);
    if (strcmp(field, "uuid") == 0) return set_str(g->uuid, value);
    if (strcmp(field, "serial") == 0) return set_str(g->serial, value);
    if (strcmp(field, "name") == 0) return set_str(g->name, value);
    if (strcmp(field, "bus_id") == 0) return set_str(g->bus_id, value);
    if (strcmp(field, "board_part_number") == 0) return set_str(g->part, value);
    if (strcmp(field, "vbios_version") == 0) return set_str(g->vbios, value);
    if (strcmp(field, "pci_device_id") == 0) return set_uint(&g->pci_device_id, value);
    if (strcmp(field, "pci_subsystem_id") == 0) return set_uint(&g->pci_subsystem_id, value);
    if (strcmp(field, "memory_total") == 0) return set_u64(&g->memory_total, value);
    if (strcmp(field, "memory_reserved") == 0) return set_u64(&g->memory_reserved, value);
    if (strcmp(field, "architecture") == 0) return set_uint(&g->architecture, value);
    if (strcmp(field, "cc") == 0) return sscanf(value, "%d.%d", &g->cc_major, &g->cc_minor) == 2 ? 0 : -1;
    if (strcmp(field, "cores") == 0) return set_uint(&g->cores, value);
    if (strcmp(field, "sm_count") == 0) return set_uint(&g->sm_count, value);
    if (strcmp(field, "max_sm_clock") == 0) return set_uint(&g->max_clock[1], value);
    if (strcmp(field, "max_mem_clock") == 0) return set_uint(&g->max_clock[2], value);
    if (strcmp(field, "bus_width") == 0) return set_uint(&g->bus_width, value);
    if (strcmp(field, "mig") == 0) return set_mig(&g->mig, value);
    if (strcmp(field, "mig_pending") == 0) return set_mig(&g->mig_pending, value);
    return -1;
}

static int set_key(const char *key, const char *value) {
    if (strcmp(key, "count") == 0) {
        if (set_uint(&S.count, value) || S.count > MAX_GPUS) return -1;
        return 0;
    }
    if (strcmp(key, "driver_version") == 0) return set_str(S.driver_version, value);
    if (strcmp(key, "nvml_version") == 0) return set_str(S.nvml_version, value);
    if (strncmp(key, "fail.", 5) == 0) return add_fail(S.fails, &S.n_fails, key + 5, value);
    if (strncmp(key, "gpu.", 4) == 0) {
        const char *sel = key + 4, *dot = strchr(sel, '.');
        if (!dot) return -1;
        if (dot - sel == 1 && *sel == '*') {
            for (int i = 0; i < MAX_GPUS; i++)
                if (set_gpu_field(&S.gpus[i], dot + 1, value)) return -1;
            return 0;
        }
        char *end;
        long i = strtol(sel, &end, 10);
        if (end != dot || i < 0 || i >= MAX_GPUS) return -1;
        return set_gpu_field(&S.gpus[i], dot + 1, value);
    }
    return -1;
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = 0;
    return s;
}

static int load_profile(void) {
    memset(&S, 0, sizeof S);
    for (int i = 0; i < MAX_GPUS; i++) {
        struct gpu *g = &S.gpus[i];
        g->mig = g->mig_pending = MIG_UNSUPPORTED;
        snprintf(g->uuid, STR, "GPU-fa4e0000-0000-0000-0000-%012x", i);
        snprintf(g->bus_id, STR, "00000000:%02X:00.0", 0x10 + i);
    }
    const char *path = getenv("FAKENVML_PROFILE");
    if (!path) {
        fprintf(stderr, "fakenvml: FAKENVML_PROFILE is not set\n");
        return -1;
    }
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "fakenvml: cannot open profile %s\n", path);
        return -1;
    }
    char line[512];
    int lineno = 0, bad = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *s = trim(line), *eq = strchr(s, '=');
        if (!*s || *s == '#') continue;
        if (!eq) {
            bad = lineno;
            break;
        }
        *eq = 0;
        if (set_key(trim(s), trim(eq + 1))) {
            bad = lineno;
            break;
        }
    }
    fclose(f);
    if (bad) fprintf(stderr, "fakenvml: %s:%d: bad line\n", path, bad);
    return bad ? -1 : 0;
}

/* ---- shared checks ---- */

static int fail_code(const struct fail *fails, int n, const char *fn) {
    for (int i = n - 1; i >= 0; i--)
        if (strcmp(fails[i].fn, fn) == 0 || strcmp(fails[i].fn, "*") == 0) return fails[i].code;
    return NVML_SUCCESS;
}

static nvmlReturn_t check_node(const char *fn) {
    if (!S.initialized) return NVML_ERROR_UNINITIALIZED;
    return fail_code(S.fails, S.n_fails, fn);
}

static nvmlReturn_t check_gpu(const struct gpu *g, const char *fn) {
    nvmlReturn_t r = check_node(fn);
    if (r) return r;
    if (g < S.gpus || g >= S.gpus + S.count) return NVML_ERROR_INVALID_ARGUMENT;
    return fail_code(g->fails, g->n_fails, fn);
}

#define CHECK_GPU(dev)                                     \
    do {                                                   \
        nvmlReturn_t r_ = check_gpu((dev), __func__);      \
        if (r_) return r_;                                 \
    } while (0)

static nvmlReturn_t copy_str(char *dst, unsigned int length, const char *src) {
    if (!dst) return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(src) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
    strcpy(dst, src);
    return NVML_SUCCESS;
}

/* ---- the exported entry points ---- */

static nvmlReturn_t init(const char *fn) {
    if (!S.initialized && load_profile()) return NVML_ERROR_UNKNOWN;
    nvmlReturn_t r = fail_code(S.fails, S.n_fails, fn);
    if (r) return r;
    S.initialized++;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlInit(void) { return init(__func__); }
nvmlReturn_t nvmlInit_v2(void) { return init(__func__); }
nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    return init(__func__);
}

/* A caller that initialises NVML must shut it down again: say so on stderr when it did not. */
__attribute__((destructor)) static void check_shutdown(void) {
    if (S.initialized) fprintf(stderr, "fakenvml: process exits without nvmlShutdown\n");
}

nvmlReturn_t nvmlShutdown(void) {
    if (!S.initialized) return NVML_ERROR_UNINITIALIZED;
    S.initialized--; /* a failure forced by the profile is reported after the shutdown was done */
    return fail_code(S.fails, S.n_fails, __func__);
}

const char *nvmlErrorString(nvmlReturn_t result) {
    for (size_t i = 0; i < NCODES; i++)
        if (CODES[i].code == result) return CODES[i].text;
    return "Unknown Error";
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    nvmlReturn_t r = check_node(__func__);
    return r ? r : copy_str(version, length, S.driver_version);
}

nvmlReturn_t nvmlSystemGetNVMLVersion(char *version, unsigned int length) {
    nvmlReturn_t r = check_node(__func__);
    return r ? r : copy_str(version, length, S.nvml_version);
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    nvmlReturn_t r = check_node(__func__);
    if (r) return r;
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    *count = S.count;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, struct gpu **device) {
    nvmlReturn_t r = check_node(__func__);
    if (r) return r;
    if (index >= S.count || !device) return NVML_ERROR_INVALID_ARGUMENT;
    r = fail_code(S.gpus[index].fails, S.gpus[index].n_fails, __func__);
    if (r) return r;
    *device = &S.gpus[index];
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUUID(struct gpu *device, char *uuid, unsigned int length) {
    CHECK_GPU(device);
    return copy_str(uuid, length, device->uuid);
}

nvmlReturn_t nvmlDeviceGetSerial(struct gpu *device, char *serial, unsigned int length) {
    CHECK_GPU(device);
    return copy_str(serial, length, device->serial);
}

nvmlReturn_t nvmlDeviceGetName(struct gpu *device, char *name, unsigned int length) {
    CHECK_GPU(device);
    return copy_str(name, length, device->name);
}

nvmlReturn_t nvmlDeviceGetBoardPartNumber(struct gpu *device, char *part, unsigned int length) {
    CHECK_GPU(device);
    return copy_str(part, length, device->part);
}

nvmlReturn_t nvmlDeviceGetVbiosVersion(struct gpu *device, char *version, unsigned int length) {
    CHECK_GPU(device);
    return copy_str(version, length, device->vbios);
}

nvmlReturn_t nvmlDeviceGetPciInfo_v3(struct gpu *device, nvmlPciInfo_t *pci) {
    CHECK_GPU(device);
    if (!pci) return NVML_ERROR_INVALID_ARGUMENT;
    memset(pci, 0, sizeof *pci);
    if (sscanf(device->bus_id, "%x:%x:%x", &pci->domain, &pci->bus, &pci->device) != 3)
        return NVML_ERROR_UNKNOWN;
    if (copy_str(pci->busId, sizeof pci->busId, device->bus_id)) return NVML_ERROR_UNKNOWN;
    snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, "%04X:%02X:%02X.0", pci->domain & 0xffffU,
             pci->bus & 0xffU, pci->device & 0x1fU);
    pci->pciDeviceId = device->pci_device_id;
    pci->pciSubSystemId = device->pci_subsystem_id;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(struct gpu *device, nvmlMemory_t *memory) {
    CHECK_GPU(device);
    if (!memory) return NVML_ERROR_INVALID_ARGUMENT;
    memory->total = device->memory_total;
    memory->used = device->memory_reserved;
    memory->free = device->memory_total - device->memory_reserved;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(struct gpu *device, nvmlMemory_v2_t *memory) {
    CHECK_GPU(device);
    if (!memory) return NVML_ERROR_INVALID_ARGUMENT;
    if (memory->version != NVML_STRUCT_VERSION(nvmlMemory_v2_t, 2)) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    memory->total = device->memory_total;
    memory->reserved = device->memory_reserved;
    memory->used = 0;
    memory->free = device->memory_total - device->memory_reserved;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetArchitecture(struct gpu *device, unsigned int *arch) {
    CHECK_GPU(device);
    if (!arch) return NVML_ERROR_INVALID_ARGUMENT;
    *arch = device->architecture;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetCudaComputeCapability(struct gpu *device, int *major, int *minor) {
    CHECK_GPU(device);
    if (!major || !minor) return NVML_ERROR_INVALID_ARGUMENT;
    *major = device->cc_major;
    *minor = device->cc_minor;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetNumGpuCores(struct gpu *device, unsigned int *cores) {
    CHECK_GPU(device);
    if (!cores) return NVML_ERROR_INVALID_ARGUMENT;
    *cores = device->cores;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetAttributes_v2(struct gpu *device, nvmlDeviceAttributes_t *attributes) {
    CHECK_GPU(device);
    if (!attributes) return NVML_ERROR_INVALID_ARGUMENT;
    memset(attributes, 0, sizeof *attributes);
    attributes->multiprocessorCount = device->sm_count;
    attributes->memorySizeMB = device->memory_total >> 20;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMaxClockInfo(struct gpu *device, unsigned int type, unsigned int *clock) {
    CHECK_GPU(device);
    if (!clock || type > 3) return NVML_ERROR_INVALID_ARGUMENT;
    *clock = device->max_clock[type == 0 ? 1 : type];
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMemoryBusWidth(struct gpu *device, unsigned int *busWidth) {
    CHECK_GPU(device);
    if (!busWidth) return NVML_ERROR_INVALID_ARGUMENT;
    if (!device->bus_width) return NVML_ERROR_NOT_SUPPORTED;
    *busWidth = device->bus_width;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMigMode(struct gpu *device, unsigned int *current, unsigned int *pending) {
    CHECK_GPU(device);
    if (!current || !pending) return NVML_ERROR_INVALID_ARGUMENT;
    if (device->mig == MIG_UNSUPPORTED) return NVML_ERROR_NOT_SUPPORTED;
    *current = (unsigned int)device->mig;
    *pending = (unsigned int)(device->mig_pending == MIG_UNSUPPORTED ? device->mig : device->mig_pending);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetGpuInstanceProfileInfoV(struct gpu *device, unsigned int profile,
                                                  nvmlGpuInstanceProfileInfo_v2_t *info) {
    CHECK_GPU(device);
    if (!info) return NVML_ERROR_INVALID_ARGUMENT;
    if (info->version != NVML_STRUCT_VERSION(nvmlGpuInstanceProfileInfo_v2_t, 2))
        return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    if (device->mig == MIG_UNSUPPORTED) return NVML_ERROR_NOT_SUPPORTED;
    if (profile >= MAX_GI_PROFILES) return NVML_ERROR_INVALID_ARGUMENT;
    const struct gi_profile *p = &device->gi_profiles[profile];
    if (!p->defined) return NVML_ERROR_NOT_SUPPORTED;
    unsigned int version = info->version;
    memset(info, 0, sizeof *info);
    info->version = version;
    info->id = profile;
    info->sliceCount = p->slices;
    info->instanceCount = p->instance_count;
    info->multiprocessorCount = p->sm_count;
    info->memorySizeMB = p->memory_mb;
    memcpy(info->name, p->name, sizeof info->name);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetGpuInstances(struct gpu *device, unsigned int profileId, struct gpu_instance **instances,
                                       unsigned int *count) {
    CHECK_GPU(device);
    if (!count || profileId >= MAX_GI_PROFILES) return NVML_ERROR_INVALID_ARGUMENT;
    if (device->mig != MIG_ENABLED) return NVML_ERROR_NOT_SUPPORTED;
    if (!device->gi_profiles[profileId].defined) return NVML_ERROR_NOT_SUPPORTED;
    unsigned int n = 0;
    for (int i = 0; i < device->n_gis; i++)
        if (device->gis[i].profile_id == profileId) {
            if (n >= device->gi_profiles[profileId].instance_count) return NVML_ERROR_INSUFFICIENT_SIZE;
            if (instances) instances[n] = &device->gis[i];
            n++;
        }
    *count = n;
    return NVML_SUCCESS;
}
