/* A Maestro producer/consumer pair in one process: two threads, one pool.
 *
 * The producer offers a field of doubles from its own buffer
 * (MSTRO_ATTR_CORE_CDO_RAW_PTR) and withdraws it once the consumer has it;
 * the consumer requires, demands and reads it through mstro_cdo_access_ptr.
 * Then a second CDO is produced in a buffer the pool provides. Misuse
 * (NULL, unknown keys, calls out of order) must give error codes.
 * Exits 0 when everything checks out. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "maestro.h"

#define N 4096

static pthread_barrier_t required;

#define CHECK(call)                                                            \
  do {                                                                         \
    mstro_status s_ = (call);                                                  \
    if (s_ != MSTRO_OK) {                                                      \
      fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,           \
              mstro_status_description(s_));                                   \
      exit(1);                                                                 \
    }                                                                          \
  } while (0)

#define EXPECT(call, status)                                                   \
  do {                                                                         \
    mstro_status s_ = (call);                                                  \
    if (s_ != (status)) {                                                      \
      fprintf(stderr, "%s:%d: %s gave %s, expected %s\n", __FILE__, __LINE__, \
              #call, mstro_status_description(s_),                             \
              mstro_status_description(status));                              \
      exit(1);                                                                 \
    }                                                                          \
  } while (0)

static void *producer(void *arg) {
  (void)arg;
  double *field = malloc(N * sizeof(double));
  for (int i = 0; i < N; i++) field[i] = 0.5 * i;
  int64_t size = N * sizeof(double);

  mstro_cdo cdo;
  CHECK(mstro_cdo_declare("demo/step1/field", MSTRO_ATTR_DEFAULT, &cdo));
  CHECK(mstro_cdo_attribute_set(cdo, MSTRO_ATTR_CORE_CDO_RAW_PTR, field, false, true));
  CHECK(mstro_cdo_attribute_set(cdo, MSTRO_ATTR_CORE_CDO_SCOPE_LOCAL_SIZE, &size, true, false));
  EXPECT(mstro_cdo_offer(cdo), MSTRO_INVSTATE); /* not sealed yet */
  CHECK(mstro_cdo_seal(cdo));
  EXPECT(mstro_cdo_attribute_set(cdo, MSTRO_ATTR_CORE_CDO_SCOPE_LOCAL_SIZE, &size, true, false),
         MSTRO_INVSTATE); /* sealed */
  CHECK(mstro_cdo_offer(cdo));
  pthread_barrier_wait(&required);
  CHECK(mstro_cdo_withdraw(cdo)); /* waits until the consumer demanded */
  CHECK(mstro_cdo_dispose(cdo));
  free(field);

  /* A CDO in a buffer of the pool: size only, then access_ptr after seal. */
  int64_t n = 1000;
  CHECK(mstro_cdo_declare("demo/step1/ids", MSTRO_ATTR_DEFAULT, &cdo));
  CHECK(mstro_cdo_attribute_set(cdo, MSTRO_ATTR_CORE_CDO_SCOPE_LOCAL_SIZE, &n, true, false));
  CHECK(mstro_cdo_seal(cdo));
  void *buf;
  int64_t len;
  CHECK(mstro_cdo_access_ptr(cdo, &buf, &len));
  if (len != n) { fprintf(stderr, "pool buffer of %ld bytes\n", (long)len); exit(1); }
  for (int i = 0; i < n; i++) ((unsigned char *)buf)[i] = (unsigned char)(i % 251);
  CHECK(mstro_cdo_offer(cdo));
  pthread_barrier_wait(&required);
  CHECK(mstro_cdo_withdraw(cdo));
  CHECK(mstro_cdo_dispose(cdo));
  return NULL;
}

static void *consumer(void *arg) {
  (void)arg;
  mstro_cdo cdo;
  CHECK(mstro_cdo_declare("demo/step1/field", MSTRO_ATTR_DEFAULT, &cdo));
  CHECK(mstro_cdo_seal(cdo));
  CHECK(mstro_cdo_require(cdo));
  pthread_barrier_wait(&required);
  CHECK(mstro_cdo_demand(cdo));
  void *data;
  int64_t len;
  CHECK(mstro_cdo_access_ptr(cdo, &data, &len));
  if (len != N * (int64_t)sizeof(double)) { fprintf(stderr, "got %ld bytes\n", (long)len); exit(1); }
  double sum = 0;
  for (int i = 0; i < N; i++) sum += ((const double *)data)[i];
  if (sum != 0.5 * N * (N - 1) / 2) { fprintf(stderr, "sum %f\n", sum); exit(1); }
  CHECK(mstro_cdo_dispose(cdo));
  EXPECT(mstro_cdo_demand(cdo), MSTRO_INVARG); /* a disposed handle */
  printf("consumer: %ld bytes, sum %.1f\n", (long)len, sum);

  CHECK(mstro_cdo_declare("demo/step1/ids", MSTRO_ATTR_DEFAULT, &cdo));
  CHECK(mstro_cdo_require(cdo));
  pthread_barrier_wait(&required);
  CHECK(mstro_cdo_demand(cdo));
  CHECK(mstro_cdo_access_ptr(cdo, &data, &len));
  for (int i = 0; i < len; i++)
    if (((const unsigned char *)data)[i] != (unsigned char)(i % 251)) { fprintf(stderr, "byte %d\n", i); exit(1); }
  CHECK(mstro_cdo_dispose(cdo));
  printf("consumer: %ld bytes from a pool buffer\n", (long)len);
  return NULL;
}

int main(void) {
  mstro_cdo bad;
  EXPECT(mstro_cdo_declare("x", MSTRO_ATTR_DEFAULT, &bad), MSTRO_INVSTATE); /* before init */
  CHECK(mstro_init("demo", "threads", 0));
  EXPECT(mstro_init("demo", "threads", 0), MSTRO_INVSTATE);
  EXPECT(mstro_cdo_declare(NULL, MSTRO_ATTR_DEFAULT, &bad), MSTRO_INVARG);
  EXPECT(mstro_cdo_declare("a//b", MSTRO_ATTR_DEFAULT, &bad), MSTRO_INVARG);
  EXPECT(mstro_cdo_seal(NULL), MSTRO_INVARG);
  CHECK(mstro_cdo_declare("demo/misuse", MSTRO_ATTR_DEFAULT, &bad));
  EXPECT(mstro_cdo_attribute_set(bad, ".maestro.core.cdo.no-such-key", &bad, true, false), MSTRO_NOENT);
  EXPECT(mstro_cdo_attribute_set(bad, MSTRO_ATTR_CORE_CDO_RAW_PTR, NULL, false, true), MSTRO_INVARG);
  EXPECT(mstro_cdo_withdraw(bad), MSTRO_INVSTATE);
  EXPECT(mstro_cdo_demand((mstro_cdo)(intptr_t)123456), MSTRO_INVARG); /* made up */
  char *info = NULL;
  EXPECT(mstro_pm_getinfo(&info), MSTRO_INVSTATE); /* no pool manager */
  CHECK(mstro_cdo_dispose(bad));

  pthread_barrier_init(&required, NULL, 2);
  pthread_t p, c;
  pthread_create(&c, NULL, consumer, NULL);
  pthread_create(&p, NULL, producer, NULL);
  pthread_join(p, NULL);
  pthread_join(c, NULL);
  CHECK(mstro_finalize());
  EXPECT(mstro_finalize(), MSTRO_INVSTATE);
  printf("maestro_threads: ok\n");
  return 0;
}
