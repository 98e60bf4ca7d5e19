--
-- PostgreSQL database dump
--

-- Dumped from database version 12.2
-- Dumped by pg_dump version 12.3

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: user; Type: TABLE; Schema: public; Owner: postgres
--

CREATE TABLE public."user" (
    id bigint NOT NULL,
    name character varying NOT NULL,
    access_token character varying NOT NULL
);


ALTER TABLE public."user" OWNER TO postgres;

--
-- Name: COLUMN "user".name; Type: COMMENT; Schema: public; Owner: postgres
--

COMMENT ON COLUMN public."user".name IS '방송상품명';


--
-- Name: COLUMN "user".access_token; Type: COMMENT; Schema: public; Owner: postgres
--

COMMENT ON COLUMN public."user".access_token IS '엑세스 토큰';


--
-- Name: user_id_seq; Type: SEQUENCE; Schema: public; Owner: postgres
--

CREATE SEQUENCE public.user_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


ALTER TABLE public.user_id_seq OWNER TO postgres;

--
-- Name: user_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: postgres
--

ALTER SEQUENCE public.user_id_seq OWNED BY public."user".id;


--
-- Name: user id; Type: DEFAULT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public."user" ALTER COLUMN id SET DEFAULT nextval('public.user_id_seq'::regclass);


--
-- Data for Name: user; Type: TABLE DATA; Schema: public; Owner: postgres
--

COPY public."user" (id, name, access_token) FROM stdin;
1	이도윤	7585cff3-9af6-4b03-8446-35655448b3f5
2	김수빈	c130c5a4-40db-4c03-8ebb-0f23d3df42c8
3	전시윤	78dc3fef-0488-44ea-8a4c-e54b1476cbc0
4	박지원	13ef812f-87a1-43ab-b640-4ce3412d73f9
5	장경희	829d7212-5d16-405a-ad89-7c679829798b
6	조나연	6699eae8-bd7a-4664-a99c-55bd4d6e75e0
7	문영호	f946b1a6-e599-44ec-81e9-92a4a13e7979
8	이지호	4527cbc2-e47f-41b1-abc4-43460c17c05d
9	심은우	fff7b989-6943-451f-aef3-0acebdf68435
10	서민준	ed65d0a3-cc94-41f8-9f3b-00f648420874
11	공지유	ddbd8198-dcb4-4704-8ee0-5854bb62b433
12	이민지	4040c3cb-dc2a-46c8-a11e-b3b93790546a
13	백상훈	77a24178-c59e-4965-894f-913755efc724
14	박영수	34af3f45-7402-4f96-88f2-760ceca65b35
15	이승민	f4a49fdc-e021-4684-b435-569a7a0c1934
16	김승우	9bc602b0-2035-4b6a-8578-2fee10959efe
17	한하윤	22ad1f22-be55-4c29-9825-9b563631320d
18	김정우	8d3119b4-e389-4cbd-bd4d-02206b5bd27f
19	정하준	2b7220a8-bd9e-4252-b3db-c10a824f180a
20	임승현	56ebb12d-f570-41c8-9063-ba23f968b98c
21	김민준	f7185f59-1c6a-4d85-95d9-1de1881673cf
22	윤서연	7ac192a6-1723-4220-843c-c5d4a3bf84e9
23	박미영	13b94067-0ef8-45a1-8597-64096675fcc0
24	장채원	5c477b5c-ae4b-4455-949a-e17f3d1304c7
25	장연우	08259c54-c1eb-4564-a43f-64782db40758
26	황미영	36ea5445-7dee-4f9f-ae9c-40490588bdf0
27	최민지	b14ef25d-340e-4648-b0f0-57419a827365
28	정하윤	dbd1667f-e996-4d42-84e5-464598e06ede
29	백지영	5403dbb8-4ea5-4ce6-8d3a-b5c5b203a184
30	박지원	def6ac4c-5f46-4ec1-bfdc-5de057daf8aa
31	박은우	f8c9c8c9-b166-4683-8f9e-6f7c55c431ae
32	박경희	651cedbc-1e17-4c5a-9bc4-924ea7cf1807
33	정예지	96b4556e-1c1a-4791-aee6-95cb820750fe
34	김영희	9dc3b527-7eca-4ec6-b81c-006225f2fb2a
35	정준혁	8f1dc6c9-8c1d-4585-a773-4c413c07d59c
36	강주원	6d7675c0-535c-49e3-97a7-8469da7074aa
37	김시우	9aa39ec6-85a1-4aed-9753-592635f416a2
38	배승민	0511fff0-5208-4d16-b3c2-509d3c5ed5c9
39	이승현	df3009e2-c6f8-43df-a1d9-5a1c8dd05c90
40	정유찬	3ff7a87e-787c-4c7b-a50c-a2dcd8f0571c
41	백태현	df5dc21e-9d6d-4ee9-a86a-ad18d4cce939
42	곽승민	ab65cfc8-c8df-48aa-846f-0295c9bc6f99
43	이지후	0b4ae897-7178-4623-b4a2-c950bb084e2b
44	박상훈	f4e2c65f-c1e6-4485-9d5a-1b51144231f8
45	이동현	d6b76150-5940-4f08-bc36-72c4aaf85846
46	박은영	eb529074-5a2a-4669-ac9d-74036b44b340
47	김정민	3b756d1a-2916-4d37-9445-81cf7899d618
48	이민준	45514ad4-97fe-4856-b2fd-c8e8485293f3
49	이건우	b5753d13-50ea-41cb-8a04-a7282a358bde
50	이예지	ec1bba5c-9d3b-4af2-ad42-2ce04b6d0b75
\.


--
-- Name: user_id_seq; Type: SEQUENCE SET; Schema: public; Owner: postgres
--

SELECT pg_catalog.setval('public.user_id_seq', 50, true);


--
-- Name: user user_pkey; Type: CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public."user"
    ADD CONSTRAINT user_pkey PRIMARY KEY (id);


--
-- PostgreSQL database dump complete
--

