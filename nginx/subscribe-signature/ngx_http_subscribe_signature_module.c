/*
 * ngx_http_subscribe_signature_module: the push node's check of signed
 * subscribe URLs (README: "Private channels: signed subscribe URLs"; the
 * signing half is glue/realtime_glue/signing.py).
 *
 *   /ev/private-ada?exp=1767225600&kid=app-1&sig=<43 characters>[&tr=ev]
 *
 *   sig = base64url, unpadded, of HMAC-SHA256(key,
 *         "realtime-glue subscribe v1\n" channel "\n" exp "\n" tr)
 *
 * Directives:
 *
 *   http:     subscribe_signature_key KID BASE64_SECRET [channels [CHANNEL ...]];
 *             subscribe_signature_scoped_prefixes PREFIX ...;
 *   location: subscribe_signature CHANNEL TRANSPORT;
 *
 * A key with `channels` opens those channels only (none when the list is
 * empty); a key without opens any channel outside the scoped prefixes.
 * In a location with `subscribe_signature`, the preaccess phase refuses (403)
 * a request whose URL does not pass (before the access phase, so that no
 * `satisfy any` with an `allow` can let an unsigned subscriber in), and $subscribe_refused says why: the
 * first of, in this order, "repeated <arg>", "unsigned", "malformed expiry",
 * "expired", "signed for transport <tr>", "unknown key", "key not valid for
 * this channel", "channel needs a key scoped to it", "bad signature"
 * ("" when the subscriber is let in).
 *
 * Cost: each key's HMAC inner and outer SHA-256 states (the key's ipad and
 * opad blocks, and the inner one also the context line) are hashed once at
 * configuration time; a check copies them and hashes the channel, expiry and
 * transport, then the 32-byte inner digest. The signatures are compared in
 * constant time (CRYPTO_memcmp).
 */

/* SHA256_Init/Update/Final: deprecated in OpenSSL 3 in favour of EVP, still
 * there, and without EVP's per-call dispatch. Measured on Debian 12's OpenSSL
 * 3.0 (SHA-NI CPU), one HMAC of a signed URL's message: copied low-level states
 * 0.18-0.21 us, copied EVP contexts (EVP_MD_CTX_copy_ex) 0.23-0.39 us, a
 * one-shot HMAC() as set-misc did it 1.6-2.7 us. */
#define OPENSSL_SUPPRESS_DEPRECATED 1

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>


#define SUBSCRIBE_SIGNATURE_CONTEXT  "realtime-glue subscribe v1\n"
#define SUBSCRIBE_SIGNATURE_MIN_SECRET  32
#define SUBSCRIBE_SIGNATURE_MAX_KID  64
/* base64url of 32 bytes, unpadded */
#define SUBSCRIBE_SIGNATURE_LEN  43
#define SUBSCRIBE_SIGNATURE_EXP_DIGITS  10


typedef struct {
    ngx_str_t     id;
    /* NULL: an unscoped key; else the only channels it opens (ngx_str_t). */
    ngx_array_t  *channels;
    SHA256_CTX    inner;
    SHA256_CTX    outer;
} ngx_http_subscribe_signature_key_t;


typedef struct {
    ngx_array_t  *keys;              /* ngx_http_subscribe_signature_key_t */
    ngx_array_t  *scoped_prefixes;   /* ngx_str_t */
} ngx_http_subscribe_signature_main_conf_t;


typedef struct {
    ngx_http_complex_value_t  *channel;
    ngx_str_t                  transport;
} ngx_http_subscribe_signature_loc_conf_t;


typedef struct {
    ngx_str_t  refused;
} ngx_http_subscribe_signature_ctx_t;


/* The query arguments the check reads: the first of each, and whether any
 * came twice (which one counts would be a guess). */
typedef struct {
    ngx_str_t   value[4];
    u_char     *first[4];
    ngx_flag_t  repeated[4];
} ngx_http_subscribe_signature_args_t;

enum { ARG_EXP = 0, ARG_KID, ARG_TR, ARG_SIG };

static ngx_str_t  ngx_http_subscribe_signature_arg_names[] = {
    ngx_string("exp"), ngx_string("kid"), ngx_string("tr"), ngx_string("sig")
};


static ngx_int_t ngx_http_subscribe_signature_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_subscribe_signature_refused_variable(
    ngx_http_request_t *r, ngx_http_variable_value_t *v, uintptr_t data);
static char *ngx_http_subscribe_signature_key(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_subscribe_signature_scoped_prefixes(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_subscribe_signature(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_subscribe_signature_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_subscribe_signature_init(ngx_conf_t *cf);
static void *ngx_http_subscribe_signature_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_subscribe_signature_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_subscribe_signature_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);


static ngx_command_t  ngx_http_subscribe_signature_commands[] = {

    { ngx_string("subscribe_signature_key"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_http_subscribe_signature_key,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("subscribe_signature_scoped_prefixes"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_subscribe_signature_scoped_prefixes,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("subscribe_signature"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE2,
      ngx_http_subscribe_signature,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_subscribe_signature_module_ctx = {
    ngx_http_subscribe_signature_add_variables,    /* preconfiguration */
    ngx_http_subscribe_signature_init,             /* postconfiguration */

    ngx_http_subscribe_signature_create_main_conf, /* create main configuration */
    NULL,                                          /* init main configuration */

    NULL,                                          /* create server configuration */
    NULL,                                          /* merge server configuration */

    ngx_http_subscribe_signature_create_loc_conf,  /* create location configuration */
    ngx_http_subscribe_signature_merge_loc_conf    /* merge location configuration */
};


ngx_module_t  ngx_http_subscribe_signature_module = {
    NGX_MODULE_V1,
    &ngx_http_subscribe_signature_module_ctx,      /* module context */
    ngx_http_subscribe_signature_commands,         /* module directives */
    NGX_HTTP_MODULE,                               /* module type */
    NULL,                                          /* init master */
    NULL,                                          /* init module */
    NULL,                                          /* init process */
    NULL,                                          /* init thread */
    NULL,                                          /* exit thread */
    NULL,                                          /* exit process */
    NULL,                                          /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_str_t  ngx_http_subscribe_signature_refused_name =
    ngx_string("subscribe_refused");

static ngx_str_t  refused_unsigned = ngx_string("unsigned");
static ngx_str_t  refused_malformed_expiry = ngx_string("malformed expiry");
static ngx_str_t  refused_expired = ngx_string("expired");
static ngx_str_t  refused_unknown_key = ngx_string("unknown key");
static ngx_str_t  refused_key_scope = ngx_string("key not valid for this channel");
static ngx_str_t  refused_scoped_channel =
    ngx_string("channel needs a key scoped to it");
static ngx_str_t  refused_bad_signature = ngx_string("bad signature");
static ngx_str_t  refused_error = ngx_string("internal error");


/* --- the check ------------------------------------------------------------ */


static void
ngx_http_subscribe_signature_parse_args(ngx_str_t *query,
    ngx_http_subscribe_signature_args_t *args)
{
    u_char      *p, *end, *param, *eq, *amp;
    size_t       name_len;
    ngx_uint_t   i;

    ngx_memzero(args, sizeof(*args));

    p = query->data;
    end = query->data + query->len;

    while (p < end) {
        param = p;
        amp = ngx_strlchr(p, end, '&');
        if (amp == NULL) {
            amp = end;
        }
        p = amp + 1;

        eq = ngx_strlchr(param, amp, '=');
        if (eq == NULL) {
            continue;
        }
        name_len = eq - param;

        for (i = 0; i < 4; i++) {
            if (name_len == ngx_http_subscribe_signature_arg_names[i].len
                && ngx_strncmp(param, ngx_http_subscribe_signature_arg_names[i].data,
                               name_len) == 0)
            {
                if (args->first[i] == NULL) {
                    args->first[i] = param;
                    args->value[i].data = eq + 1;
                    args->value[i].len = amp - (eq + 1);

                } else {
                    args->repeated[i] = 1;
                }
                break;
            }
        }
    }
}


static ngx_int_t
ngx_http_subscribe_signature_starts_with(ngx_str_t *s, ngx_str_t *prefix)
{
    return s->len >= prefix->len
           && ngx_memcmp(s->data, prefix->data, prefix->len) == 0;
}


static ngx_str_t *
ngx_http_subscribe_signature_message(ngx_pool_t *pool, const char *what,
    ngx_str_t *value)
{
    size_t      len;
    ngx_str_t  *message;

    message = ngx_palloc(pool, sizeof(ngx_str_t));
    if (message == NULL) {
        return &refused_error;
    }
    len = ngx_strlen(what);
    message->data = ngx_pnalloc(pool, len + value->len);
    if (message->data == NULL) {
        return &refused_error;
    }
    message->len = ngx_cpymem(ngx_cpymem(message->data, what, len),
                              value->data, value->len)
                   - message->data;
    return message;
}


/* Why the request may not subscribe: "" when it may. */
static ngx_str_t *
ngx_http_subscribe_signature_problem(ngx_http_request_t *r,
    ngx_http_subscribe_signature_main_conf_t *smcf,
    ngx_http_subscribe_signature_loc_conf_t *slcf)
{
    static ngx_str_t  none = ngx_null_string;

    u_char                               *first, *p;
    time_t                                expires;
    ngx_str_t                             channel, *prefix, *scoped, encoded;
    ngx_str_t                             digest_str;
    ngx_uint_t                            i, repeated;
    SHA256_CTX                            sha;
    ngx_http_subscribe_signature_key_t   *key;
    ngx_http_subscribe_signature_args_t   args;
    u_char                                digest[SHA256_DIGEST_LENGTH];
    u_char                                expected[SUBSCRIBE_SIGNATURE_LEN + 1];

    ngx_http_subscribe_signature_parse_args(&r->args, &args);

    /* A repeated argument: the one that comes first in the query. */
    repeated = 4;
    first = NULL;
    for (i = 0; i < 4; i++) {
        if (args.repeated[i] && (first == NULL || args.first[i] < first)) {
            first = args.first[i];
            repeated = i;
        }
    }
    if (repeated < 4) {
        return ngx_http_subscribe_signature_message(r->pool, "repeated ",
                   &ngx_http_subscribe_signature_arg_names[repeated]);
    }

    if (args.value[ARG_EXP].len == 0 || args.value[ARG_KID].len == 0
        || args.value[ARG_SIG].len == 0)
    {
        return &refused_unsigned;
    }

    if (args.value[ARG_EXP].len != SUBSCRIBE_SIGNATURE_EXP_DIGITS) {
        return &refused_malformed_expiry;
    }
    expires = 0;
    for (p = args.value[ARG_EXP].data;
         p < args.value[ARG_EXP].data + args.value[ARG_EXP].len;
         p++)
    {
        if (*p < '0' || *p > '9') {
            return &refused_malformed_expiry;
        }
        expires = expires * 10 + (*p - '0');
    }
    if (expires <= ngx_time()) {
        return &refused_expired;
    }

    if (args.value[ARG_TR].len
        && (args.value[ARG_TR].len != slcf->transport.len
            || ngx_memcmp(args.value[ARG_TR].data, slcf->transport.data,
                          slcf->transport.len) != 0))
    {
        return ngx_http_subscribe_signature_message(r->pool,
                   "signed for transport ", &args.value[ARG_TR]);
    }

    if (ngx_http_complex_value(r, slcf->channel, &channel) != NGX_OK) {
        return &refused_error;
    }

    /* The key: its id exactly as written. */
    key = NULL;
    if (smcf->keys) {
        key = smcf->keys->elts;
        for (i = 0; i < smcf->keys->nelts; i++) {
            if (key[i].id.len == args.value[ARG_KID].len
                && ngx_memcmp(key[i].id.data, args.value[ARG_KID].data,
                              key[i].id.len) == 0)
            {
                break;
            }
        }
        key = (i < smcf->keys->nelts) ? &key[i] : NULL;
    }
    if (key == NULL) {
        return &refused_unknown_key;
    }

    if (key->channels) {
        scoped = key->channels->elts;
        for (i = 0; i < key->channels->nelts; i++) {
            if (scoped[i].len == channel.len
                && ngx_memcmp(scoped[i].data, channel.data, channel.len) == 0)
            {
                break;
            }
        }
        if (i == key->channels->nelts) {
            return &refused_key_scope;
        }

    } else if (smcf->scoped_prefixes) {
        prefix = smcf->scoped_prefixes->elts;
        for (i = 0; i < smcf->scoped_prefixes->nelts; i++) {
            if (ngx_http_subscribe_signature_starts_with(&channel, &prefix[i])) {
                return &refused_scoped_channel;
            }
        }
    }

    /* HMAC-SHA256 from the key's precomputed states. */
    sha = key->inner;
    SHA256_Update(&sha, channel.data, channel.len);
    SHA256_Update(&sha, "\n", 1);
    SHA256_Update(&sha, args.value[ARG_EXP].data, args.value[ARG_EXP].len);
    SHA256_Update(&sha, "\n", 1);
    SHA256_Update(&sha, args.value[ARG_TR].data, args.value[ARG_TR].len);
    SHA256_Final(digest, &sha);

    sha = key->outer;
    SHA256_Update(&sha, digest, sizeof(digest));
    SHA256_Final(digest, &sha);
    ngx_explicit_memzero(&sha, sizeof(sha));

    digest_str.data = digest;
    digest_str.len = sizeof(digest);
    encoded.data = expected;
    ngx_encode_base64url(&encoded, &digest_str);

    if (args.value[ARG_SIG].len != SUBSCRIBE_SIGNATURE_LEN
        || CRYPTO_memcmp(expected, args.value[ARG_SIG].data,
                         SUBSCRIBE_SIGNATURE_LEN) != 0)
    {
        return &refused_bad_signature;
    }

    return &none;
}


static ngx_int_t
ngx_http_subscribe_signature_handler(ngx_http_request_t *r)
{
    ngx_str_t                                 *problem;
    ngx_http_subscribe_signature_ctx_t        *ctx;
    ngx_http_subscribe_signature_loc_conf_t   *slcf;
    ngx_http_subscribe_signature_main_conf_t  *smcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_subscribe_signature_module);
    if (slcf->channel == NULL) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_subscribe_signature_module);
    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_subscribe_signature_ctx_t));
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        ngx_http_set_ctx(r, ctx, ngx_http_subscribe_signature_module);
    }

    smcf = ngx_http_get_module_main_conf(r, ngx_http_subscribe_signature_module);
    problem = ngx_http_subscribe_signature_problem(r, smcf, slcf);
    ctx->refused = *problem;

    if (problem->len == 0) {
        return NGX_DECLINED;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "subscribe signature refused: %V", problem);

    return (problem == &refused_error) ? NGX_HTTP_INTERNAL_SERVER_ERROR
                                       : NGX_HTTP_FORBIDDEN;
}


static ngx_int_t
ngx_http_subscribe_signature_refused_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_subscribe_signature_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_subscribe_signature_module);

    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;
    v->escape = 0;

    if (ctx == NULL) {
        v->len = 0;
        v->data = (u_char *) "";
        return NGX_OK;
    }

    v->len = ctx->refused.len;
    v->data = ctx->refused.data;
    return NGX_OK;
}


/* --- configuration -------------------------------------------------------- */


static ngx_int_t
ngx_http_subscribe_signature_valid_kid(ngx_str_t *kid)
{
    u_char  *p;

    if (kid->len == 0 || kid->len > SUBSCRIBE_SIGNATURE_MAX_KID) {
        return 0;
    }
    for (p = kid->data; p < kid->data + kid->len; p++) {
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')
              || (*p >= '0' && *p <= '9') || *p == '_' || *p == '.'
              || *p == '-'))
        {
            return 0;
        }
    }
    return 1;
}


/* Standard base64 with its padding: what signing.py's key set holds. */
static ngx_int_t
ngx_http_subscribe_signature_valid_base64(ngx_str_t *s)
{
    u_char      *p;
    ngx_uint_t   padding;

    if (s->len == 0 || s->len % 4 != 0) {
        return 0;
    }
    padding = 0;
    for (p = s->data; p < s->data + s->len; p++) {
        if (*p == '=') {
            padding++;
            continue;
        }
        if (padding
            || !((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')
                 || (*p >= '0' && *p <= '9') || *p == '+' || *p == '/'))
        {
            return 0;
        }
    }
    return padding <= 2;
}


static char *
ngx_http_subscribe_signature_key(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_subscribe_signature_main_conf_t *smcf = conf;

    u_char                               pad[SHA256_CBLOCK];
    ngx_str_t                           *value, secret, *channel;
    ngx_uint_t                           i;
    ngx_http_subscribe_signature_key_t  *key;

    value = cf->args->elts;

    if (!ngx_http_subscribe_signature_valid_kid(&value[1])) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "subscribe signature key \"%V\": a key id is 1-%d "
                           "characters of A-Z a-z 0-9 _ . -",
                           &value[1], SUBSCRIBE_SIGNATURE_MAX_KID);
        return NGX_CONF_ERROR;
    }

    if (smcf->keys == NULL) {
        smcf->keys = ngx_array_create(cf->pool, 4,
                                      sizeof(ngx_http_subscribe_signature_key_t));
        if (smcf->keys == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    key = smcf->keys->elts;
    for (i = 0; i < smcf->keys->nelts; i++) {
        if (key[i].id.len == value[1].len
            && ngx_memcmp(key[i].id.data, value[1].data, value[1].len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "subscribe signature key \"%V\" is given twice",
                               &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    if (!ngx_http_subscribe_signature_valid_base64(&value[2])) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "subscribe signature key \"%V\": the secret is not "
                           "base64", &value[1]);
        return NGX_CONF_ERROR;
    }

    secret.data = ngx_pnalloc(cf->temp_pool, ngx_base64_decoded_length(value[2].len));
    if (secret.data == NULL) {
        return NGX_CONF_ERROR;
    }
    if (ngx_decode_base64(&secret, &value[2]) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "subscribe signature key \"%V\": the secret is not "
                           "base64", &value[1]);
        return NGX_CONF_ERROR;
    }
    if (secret.len < SUBSCRIBE_SIGNATURE_MIN_SECRET) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "subscribe signature key \"%V\" needs a secret of %d "
                           "bytes or more, it has %uz",
                           &value[1], SUBSCRIBE_SIGNATURE_MIN_SECRET, secret.len);
        ngx_explicit_memzero(secret.data, secret.len);
        return NGX_CONF_ERROR;
    }

    key = ngx_array_push(smcf->keys);
    if (key == NULL) {
        return NGX_CONF_ERROR;
    }
    ngx_memzero(key, sizeof(*key));
    key->id = value[1];

    if (cf->args->nelts > 3) {
        if (ngx_strcmp(value[3].data, "channels") != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "subscribe signature key \"%V\": \"%V\" after the "
                               "secret, expected \"channels\" and the channels "
                               "the key opens", &value[1], &value[3]);
            return NGX_CONF_ERROR;
        }
        key->channels = ngx_array_create(cf->pool, cf->args->nelts - 3,
                                         sizeof(ngx_str_t));
        if (key->channels == NULL) {
            return NGX_CONF_ERROR;
        }
        for (i = 4; i < cf->args->nelts; i++) {
            channel = ngx_array_push(key->channels);
            if (channel == NULL) {
                return NGX_CONF_ERROR;
            }
            *channel = value[i];
        }
    }

    /* HMAC (RFC 2104): a key longer than a block is hashed first. */
    if (secret.len > SHA256_CBLOCK) {
        SHA256(secret.data, secret.len, secret.data);
        secret.len = SHA256_DIGEST_LENGTH;
    }

    ngx_memset(pad, 0x36, sizeof(pad));
    for (i = 0; i < secret.len; i++) {
        pad[i] ^= secret.data[i];
    }
    SHA256_Init(&key->inner);
    SHA256_Update(&key->inner, pad, sizeof(pad));
    SHA256_Update(&key->inner, SUBSCRIBE_SIGNATURE_CONTEXT,
                  sizeof(SUBSCRIBE_SIGNATURE_CONTEXT) - 1);

    ngx_memset(pad, 0x5c, sizeof(pad));
    for (i = 0; i < secret.len; i++) {
        pad[i] ^= secret.data[i];
    }
    SHA256_Init(&key->outer);
    SHA256_Update(&key->outer, pad, sizeof(pad));

    ngx_explicit_memzero(pad, sizeof(pad));
    ngx_explicit_memzero(secret.data, secret.len);

    return NGX_CONF_OK;
}


static char *
ngx_http_subscribe_signature_scoped_prefixes(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_subscribe_signature_main_conf_t *smcf = conf;

    ngx_str_t   *value, *prefix;
    ngx_uint_t   i;

    if (smcf->scoped_prefixes != NULL) {
        return "is duplicate";
    }

    smcf->scoped_prefixes = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                             sizeof(ngx_str_t));
    if (smcf->scoped_prefixes == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;
    for (i = 1; i < cf->args->nelts; i++) {
        if (value[i].len == 0) {
            return "takes non-empty prefixes";
        }
        prefix = ngx_array_push(smcf->scoped_prefixes);
        if (prefix == NULL) {
            return NGX_CONF_ERROR;
        }
        *prefix = value[i];
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_subscribe_signature(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_subscribe_signature_loc_conf_t *slcf = conf;

    ngx_str_t                         *value;
    ngx_http_compile_complex_value_t   ccv;

    if (slcf->channel != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    slcf->channel = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
    if (slcf->channel == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));
    ccv.cf = cf;
    ccv.value = &value[1];
    ccv.complex_value = slcf->channel;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (value[2].len == 0) {
        return "takes a transport name (ev, ws, lp, sub)";
    }
    slcf->transport = value[2];

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_subscribe_signature_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var;

    var = ngx_http_add_variable(cf, &ngx_http_subscribe_signature_refused_name,
                                NGX_HTTP_VAR_NOCACHEABLE);
    if (var == NULL) {
        return NGX_ERROR;
    }
    var->get_handler = ngx_http_subscribe_signature_refused_variable;

    return NGX_OK;
}


static ngx_int_t
ngx_http_subscribe_signature_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PREACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }
    *h = ngx_http_subscribe_signature_handler;

    return NGX_OK;
}


static void *
ngx_http_subscribe_signature_create_main_conf(ngx_conf_t *cf)
{
    /* keys and scoped_prefixes: NULL until a directive sets them */
    return ngx_pcalloc(cf->pool,
                       sizeof(ngx_http_subscribe_signature_main_conf_t));
}


static void *
ngx_http_subscribe_signature_create_loc_conf(ngx_conf_t *cf)
{
    /* channel: NULL, transport: empty (no check here) */
    return ngx_pcalloc(cf->pool,
                       sizeof(ngx_http_subscribe_signature_loc_conf_t));
}


static char *
ngx_http_subscribe_signature_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_subscribe_signature_loc_conf_t *prev = parent;
    ngx_http_subscribe_signature_loc_conf_t *conf = child;

    if (conf->channel == NULL) {
        conf->channel = prev->channel;
        conf->transport = prev->transport;
    }

    return NGX_CONF_OK;
}
