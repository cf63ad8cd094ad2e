/*
 * A fake libnvidia-ml.so.1 for the tests: the real nvidia-ml-py loads it with
 * ctypes exactly as it loads the driver's library, so the whole client path
 * (symbol lookup, structs, error codes) is exercised without a GPU.
 *
 * Two devices:
 *   0  "NVIDIA Fake A100"      every field answers
 *   1  "NVIDIA Fake H100 MIG"  MIG enabled; utilisation answers NotSupported
 * Controlled by environment variables read at nvmlInit:
 *   FAKE_NVML_INIT_FAIL=1      nvmlInit answers DriverNotLoaded
 *   FAKE_NVML_DEVICES=N        number of devices (default 2, at most 16)
 *   FAKE_NVML_LOST_FILE=path   while this file exists, device 1 answers GpuIsLost
 * Built with -DFAKE_NVML_OLD, the library lacks nvmlDeviceGetMemoryInfo_v2 and
 * nvmlDeviceGetTemperatureV (an older driver): callers must fall back.
 * fake_nvml_calls(name, index) counts calls, so tests can check that a field
 * answering NotSupported is not asked again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SUCCESS 0
#define ERR_UNINITIALIZED 1
#define ERR_INVALID_ARGUMENT 2
#define ERR_NOT_SUPPORTED 3
#define ERR_DRIVER_NOT_LOADED 9
#define ERR_GPU_IS_LOST 15
#define MAX_DEVICES 16

typedef struct { unsigned int gpu; unsigned int memory; } utilization_t;
typedef struct { unsigned long long total, free, used; } memory_v1_t;
typedef struct { unsigned int version; unsigned long long total, reserved, free, used; } memory_v2_t;
typedef struct { unsigned int version; int sensorType; int temperature; } temperature_v1_t;

static int initialised = 0;
static int n_devices = 2;
static const char *lost_file = NULL;
static struct timespec t0;
enum { C_UTIL, C_MEM, C_MEM2, C_POWER, C_TEMP, C_TEMPV, C_CLOCK, C_ENERGY, C_N };
static const char *call_names[C_N] = {
    "utilization", "memory", "memory_v2", "power", "temperature", "temperature_v", "clock", "energy"};
static long calls[C_N][MAX_DEVICES];

long fake_nvml_calls(const char *name, unsigned int index) {
    for (int i = 0; i < C_N; i++)
        if (strcmp(name, call_names[i]) == 0 && index < MAX_DEVICES) return calls[i][index];
    return -1;
}

static double elapsed_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9;
}

/* handles are 1-based indices disguised as pointers */
static int device_of(void *handle, int counter) {
    long i = (long)handle - 1;
    if (!initialised) return -ERR_UNINITIALIZED;
    if (i < 0 || i >= n_devices) return -ERR_INVALID_ARGUMENT;
    if (counter >= 0) calls[counter][i]++;
    if (i == 1 && lost_file && access(lost_file, F_OK) == 0) return -ERR_GPU_IS_LOST;
    return (int)i;
}

int nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    const char *fail = getenv("FAKE_NVML_INIT_FAIL");
    if (fail && strcmp(fail, "1") == 0) return ERR_DRIVER_NOT_LOADED;
    const char *n = getenv("FAKE_NVML_DEVICES");
    if (n) n_devices = atoi(n);
    if (n_devices < 0) n_devices = 0;
    if (n_devices > MAX_DEVICES) n_devices = MAX_DEVICES;
    lost_file = getenv("FAKE_NVML_LOST_FILE");
    clock_gettime(CLOCK_MONOTONIC, &t0);
    initialised = 1;
    return SUCCESS;
}

int nvmlInit_v2(void) { return nvmlInitWithFlags(0); }

int nvmlShutdown(void) {
    if (!initialised) return ERR_UNINITIALIZED;
    initialised = 0;
    return SUCCESS;
}

const char *nvmlErrorString(int result) {
    switch (result) {
    case SUCCESS: return "Success";
    case ERR_NOT_SUPPORTED: return "Not Supported";
    case ERR_GPU_IS_LOST: return "GPU is lost";
    default: return "Fake NVML error";
    }
}

int nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    snprintf(version, length, "%s", "999.99-fake");
    return SUCCESS;
}

int nvmlDeviceGetCount_v2(unsigned int *count) {
    if (!initialised) return ERR_UNINITIALIZED;
    *count = (unsigned int)n_devices;
    return SUCCESS;
}

int nvmlDeviceGetHandleByIndex_v2(unsigned int index, void **device) {
    if (!initialised) return ERR_UNINITIALIZED;
    if ((int)index >= n_devices) return ERR_INVALID_ARGUMENT;
    *device = (void *)(long)(index + 1);
    return SUCCESS;
}

#define DEVICE(handle, counter)                 \
    int i = device_of(handle, counter);         \
    if (i < 0) return -i;

int nvmlDeviceGetUUID(void *handle, char *uuid, unsigned int length) {
    DEVICE(handle, -1);
    snprintf(uuid, length, "GPU-fa4e0000-0000-0000-0000-%012d", i);
    return SUCCESS;
}

int nvmlDeviceGetName(void *handle, char *name, unsigned int length) {
    DEVICE(handle, -1);
    snprintf(name, length, "%s", i == 1 ? "NVIDIA Fake H100 MIG" : "NVIDIA Fake A100");
    return SUCCESS;
}

int nvmlDeviceGetMigMode(void *handle, unsigned int *current, unsigned int *pending) {
    DEVICE(handle, -1);
    *current = *pending = (i == 1);
    return SUCCESS;
}

int nvmlDeviceGetUtilizationRates(void *handle, utilization_t *util) {
    DEVICE(handle, C_UTIL);
    if (i == 1) return ERR_NOT_SUPPORTED; /* MIG: no device-level utilisation */
    util->gpu = 50 + (unsigned int)(i % 4) * 10;
    util->memory = 20;
    return SUCCESS;
}

static unsigned long long gib(unsigned long long n) { return n << 30; }

int nvmlDeviceGetMemoryInfo(void *handle, memory_v1_t *mem) {
    DEVICE(handle, C_MEM);
    mem->total = gib(i == 1 ? 80 : 40);
    mem->used = gib(i == 1 ? 20 : 10);
    mem->free = mem->total - mem->used;
    return SUCCESS;
}

#ifndef FAKE_NVML_OLD
int nvmlDeviceGetMemoryInfo_v2(void *handle, memory_v2_t *mem) {
    DEVICE(handle, C_MEM2);
    if (mem->version != 0x02000028) return ERR_INVALID_ARGUMENT;
    mem->total = gib(i == 1 ? 80 : 40);
    mem->reserved = gib(1);
    mem->used = gib(i == 1 ? 20 : 10);
    mem->free = mem->total - mem->used - mem->reserved;
    return SUCCESS;
}

int nvmlDeviceGetTemperatureV(void *handle, temperature_v1_t *temp) {
    DEVICE(handle, C_TEMPV);
    if (temp->sensorType != 0) return ERR_NOT_SUPPORTED;
    temp->temperature = i == 1 ? 70 : 60;
    return SUCCESS;
}
#endif

int nvmlDeviceGetTemperature(void *handle, int sensor, unsigned int *temp) {
    DEVICE(handle, C_TEMP);
    if (sensor != 0) return ERR_NOT_SUPPORTED;
    *temp = i == 1 ? 70 : 60;
    return SUCCESS;
}

static unsigned int power_mw(int i) { return i == 1 ? 300000u : 250000u; }

int nvmlDeviceGetPowerUsage(void *handle, unsigned int *power) {
    DEVICE(handle, C_POWER);
    *power = power_mw(i);
    return SUCCESS;
}

int nvmlDeviceGetClockInfo(void *handle, int type, unsigned int *clock) {
    DEVICE(handle, C_CLOCK);
    if (type != 1) return ERR_NOT_SUPPORTED; /* only the SM clock */
    *clock = i == 1 ? 1980 : 1410;
    return SUCCESS;
}

/* Energy since "driver load": a base plus power x time since nvmlInit (mJ). */
int nvmlDeviceGetTotalEnergyConsumption(void *handle, unsigned long long *energy) {
    DEVICE(handle, C_ENERGY);
    *energy = 1000000ull * (unsigned long long)(i + 1) + (unsigned long long)(elapsed_s() * power_mw(i));
    return SUCCESS;
}
